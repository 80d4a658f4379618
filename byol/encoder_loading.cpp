// Loading an encoder from a byol.cpp checkpoint, an export or a torchvision file (byol/evaluation.h).
#include <omp.h>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "byol/checkpoint.h"
#include "byol/eval_detail.h"
#include "byol/evaluation.h"
#include "byol/optimizers.h"
#include "byol/schedules.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/math/optimizers.h"

namespace byol::eval {
using namespace detail;

// --- loading an encoder
// ---------------------------------------------------------------------------------------

namespace {

// The stored configuration, after checking the fields that were given against it (an empty block list
// means the depth's standard one).
models::ResNetConfig agreed_config(const std::string& path, const models::ResNetConfig& stored,
                                   const std::optional<models::ResNetConfig>& config,
                                   const EncoderSource::Given& given) {
  if (!config) return stored;
  std::string differ;
  const auto check = [&differ](bool on, const char* name, const auto& file, const auto& line) {
    if (on && file != line) differ += cat(differ.empty() ? "" : ", ", name, " ", file, " (given ", line, ")");
  };
  const auto stem_name = [](models::Stem s) {
    return std::string(s == models::Stem::cifar ? "cifar" : "imagenet");
  };
  models::ResNetConfig a = stored, b = *config;
  if (a.blocks.empty()) a.blocks = models::resnet_blocks(a.depth);
  if (b.blocks.empty()) b.blocks = models::resnet_blocks(b.depth);
  check(given.depth, "depth", a.depth, b.depth);
  // (blocks only when the given configuration lists them: no command-line flag does)
  if (given.depth && !config->blocks.empty() && a.blocks != b.blocks)
    differ += cat(differ.empty() ? "" : ", ", "blocks");
  check(given.width, "width", a.width, b.width);
  check(given.stem, "stem", stem_name(a.stem), stem_name(b.stem));
  check(given.base_channels, "base channels", a.base_channels, b.base_channels);
  BYOL_CHECK(differ.empty(), path, ": the file's encoder ", encoder_config_json(stored),
             " differs from the one given on the command line in ", differ);
  return stored;
}

// `file` (when not empty) claims to hold this encoder: it must have at least 4 bytes per parameter and
// statistic, which bounds what a small file with a huge encoder_config can make us allocate.
void build(LoadedEncoder& out, const models::ResNetConfig& cfg, const std::string& file = "") {
  if (!file.empty()) {
    const models::ResNetSize n = models::resnet_size(cfg);
    std::error_code ec;
    const uintmax_t bytes = std::filesystem::file_size(file, ec);
    BYOL_CHECK(!ec, file, ": cannot read its size: ", ec.message());
    BYOL_CHECK(uintmax_t(n.params + n.stats) * 4 <= bytes, file, ": its encoder configuration ",
               encoder_config_json(cfg), " has ", n.params, " parameters and ", n.stats,
               " statistics, more than the file's ", bytes, " bytes can hold");
  }
  out.registry = std::make_unique<models::ParamRegistry>();
  out.encoder = std::make_unique<models::ResNet>(*out.registry, "", cfg);
  out.registry->finalize(false);
}

}  // namespace

LoadedEncoder load_encoder(const EncoderSource& source) {
  LoadedEncoder out;
  out.path = source.path;
  if (source.path.empty()) {
    BYOL_CHECK(source.config.has_value(),
               "load_encoder: random initialisation needs an encoder configuration");
    build(out, *source.config);
    std::mt19937_64 gen(data::mix_seed(source.seed, 0x696e6974ull));
    out.registry->initialize(gen);
    out.kind = "random-init";
    return out;
  }
  const SafetensorsFile f = load_safetensors(source.path);
  if (f.has_metadata("format") && f.metadata_value("format") == checkpoint_names::kFormat) {
    const nlohmann::json cfg = nlohmann::json::parse(f.metadata_value("config"), nullptr, false);
    BYOL_CHECK(!cfg.is_discarded() && cfg.contains("network"), source.path,
               ": metadata 'config' has no 'network' object");
    build(out,
          agreed_config(
              source.path,
              encoder_config_from_json(cfg["network"].dump(), source.path + ": metadata 'config' network"),
              source.config, source.given),
          source.path);
    for (const models::ParamEntry& e : out.registry->param_entries()) {
      f.copy_to(std::string(checkpoint_names::kOnline) + "/encoder." + e.name, *e.slot);
      ++out.loaded;
    }
    for (const models::StatEntry& e : out.registry->stat_entries()) {
      f.copy_to(std::string(checkpoint_names::kOnlineStats) + "/encoder." + e.name, *e.slot);
      ++out.loaded;
    }
    out.kind = "checkpoint";
    return out;
  }
  if (f.has_metadata("encoder_config")) {
    build(out,
          agreed_config(source.path,
                        encoder_config_from_json(f.metadata_value("encoder_config"),
                                                 source.path + ": metadata 'encoder_config'"),
                        source.config, source.given),
          source.path);
    out.kind = "exported";
  } else {
    BYOL_CHECK(
        f.contains("conv1.weight"), source.path,
        ": cannot tell what kind of encoder file this is: it is not a byol.cpp checkpoint (metadata "
        "'format'), has no 'encoder_config' metadata (an exported encoder) and no tensor 'conv1.weight' "
        "(a torchvision ResNet)");
    BYOL_CHECK(source.config.has_value(), source.path,
               ": a torchvision ResNet file does not say its shape; give the encoder configuration "
               "(--depth, --width, --stem, --base-channels)");
    build(out, *source.config);
    out.kind = "torchvision";
  }
  const ImportReport rep = import_encoder(source.path, *out.registry, "");
  out.loaded = rep.loaded;
  out.ignored = rep.ignored;
  return out;
}

}  // namespace byol::eval
