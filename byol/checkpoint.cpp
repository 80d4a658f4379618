#include "byol/checkpoint.h"

#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/io/safetensors.h"

namespace byol {

namespace {

using namespace checkpoint_names;

nlohmann::json encoder_json(const models::ResNetConfig& e) {
  return {{"depth", e.depth},
          {"width", e.width},
          {"stem", e.stem == models::Stem::cifar ? "cifar" : "imagenet"},
          {"zero_init_residual", e.zero_init_residual},
          {"base_channels", e.base_channels},
          {"blocks", e.blocks}};
}

nlohmann::json network_json(const NetworkConfig& net) {
  nlohmann::json j = encoder_json(net.encoder);
  j["projector_hidden"] = net.projector_hidden;
  j["projection_dim"] = net.projection_dim;
  j["predictor_hidden"] = net.predictor_hidden;
  // Recorded only when not the paper's 2, so checkpoints written before the key existed still resume.
  if (net.projector_depth != 2) j["projector_depth"] = net.projector_depth;
  if (net.predictor_depth != 2) j["predictor_depth"] = net.predictor_depth;
  return j;
}

// Permutes a 4-D tensor's axes: out[i0, i1, i2, i3] = in[...] with out axis k = in axis perm[k].
Tensor permute4(const Tensor& t, const int perm[4]) {
  Tensor src = t.to(Device::cpu()).contiguous();
  BYOL_CHECK(src.dtype() == DType::f32, "permute: expected f32, got ", src.describe());
  const Shape& s = src.shape();
  Shape out_shape = {s[perm[0]], s[perm[1]], s[perm[2]], s[perm[3]]};
  Tensor out = Tensor::empty(out_shape);
  const Shape st = contiguous_strides(s);
  const float* in = src.data<float>();
  float* o = out.data<float>();
  int64_t i = 0;
  for (int64_t a = 0; a < out_shape[0]; ++a)
    for (int64_t b = 0; b < out_shape[1]; ++b)
      for (int64_t c = 0; c < out_shape[2]; ++c)
        for (int64_t d = 0; d < out_shape[3]; ++d)
          o[i++] = in[a * st[perm[0]] + b * st[perm[1]] + c * st[perm[2]] + d * st[perm[3]]];
  return out;
}

void add_group(NamedTensors& out, const std::string& group, const models::ParamRegistry& reg,
               const Tensor& buffer) {
  for (const auto& e : reg.param_entries())
    out.emplace_back(group + "/" + e.name, buffer.window(e.offset, e.shape));
}

void load_group(const SafetensorsFile& f, const std::string& group, const models::ParamRegistry& reg,
                const Tensor& buffer) {
  for (const auto& e : reg.param_entries()) f.copy_to(group + "/" + e.name, buffer.window(e.offset, e.shape));
}

void add_stats(NamedTensors& out, const std::string& group, const models::ParamRegistry& reg) {
  for (const auto& e : reg.stat_entries()) out.emplace_back(group + "/" + e.name, *e.slot);
}

void load_stats(const SafetensorsFile& f, const std::string& group, const models::ParamRegistry& reg) {
  for (const auto& e : reg.stat_entries()) f.copy_to(group + "/" + e.name, *e.slot);
}

template <class T>
T metadata_integer(const std::map<std::string, std::string>& meta, const std::string& key,
                   const std::string& path) {
  const auto it = meta.find(key);
  BYOL_CHECK(it != meta.end(), path, ": metadata '", key, "' is missing");
  const std::string& text = it->second;
  T value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  BYOL_CHECK(!text.empty() && ec == std::errc() && end == text.data() + text.size(), path, ": metadata '",
             key, "' is \"", text, "\", expected an integer in ", std::numeric_limits<T>::min(), "..",
             std::numeric_limits<T>::max());
  return value;
}

}  // namespace

int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key,
                     const std::string& path) {
  return metadata_integer<int64_t>(meta, key, path);
}

uint64_t metadata_uint(const std::map<std::string, std::string>& meta, const std::string& key,
                       const std::string& path) {
  return metadata_integer<uint64_t>(meta, key, path);
}

Tensor krsc_to_oihw(const Tensor& w) {
  static const int perm[4] = {0, 3, 1, 2};
  return w.dim() == 4 ? permute4(w, perm) : w;
}

Tensor oihw_to_krsc(const Tensor& w) {
  static const int perm[4] = {0, 2, 3, 1};
  return w.dim() == 4 ? permute4(w, perm) : w;
}

std::string config_json(const NetworkConfig& net, const TrainConfig& t) {
  nlohmann::json j = {{"network", network_json(net)},
                      {"train",
                       {{"batch_size", t.batch_size},
                        {"total_steps", t.total_steps},
                        {"warmup_steps", t.warmup_steps},
                        {"base_lr", t.base_lr},
                        {"weight_decay", t.weight_decay},
                        {"tau_base", t.tau_base},
                        {"lars_eta", t.lars_eta},
                        {"lars_momentum", t.lars_momentum},
                        {"probe_classes", t.probe_classes},
                        {"probe_lr", t.probe_lr},
                        {"seed", t.seed},
                        {"copy_target_init", t.copy_target_init}}}};
  return j.dump();
}

void save_checkpoint(const std::string& path, const Learner& learner,
                     const std::map<std::string, std::string>& extra_metadata) {
  const ByolNetworks& nets = learner.nets;
  NamedTensors tensors;
  add_group(tensors, kOnline, nets.online, nets.online.params());
  add_stats(tensors, kOnlineStats, nets.online);
  add_group(tensors, kTarget, nets.target, nets.target.params());
  add_stats(tensors, kTargetStats, nets.target);
  add_group(tensors, "lars_momentum", nets.online, learner.lars.momentum());
  std::map<std::string, std::string> meta = extra_metadata;
  if (learner.probe) {
    add_group(tensors, "probe", learner.probe_params, learner.probe_params.params());
    add_group(tensors, "probe_adam_m", learner.probe_params, learner.probe_optimizer->first_moment());
    add_group(tensors, "probe_adam_v", learner.probe_params, learner.probe_optimizer->second_moment());
    meta["probe_adam_steps"] = std::to_string(learner.probe_optimizer->steps_taken());
  }
  meta["format"] = kFormat;
  meta["step"] = std::to_string(learner.steps_done());
  meta["config"] = config_json(nets.config(), learner.train_config());
  save_safetensors(path, tensors, meta);
}

std::map<std::string, std::string> load_checkpoint(const std::string& path, Learner& learner) {
  const SafetensorsFile f = load_safetensors(path);
  BYOL_CHECK(f.has_metadata("format") && f.metadata_value("format") == kFormat, path,
             ": not a byol.cpp checkpoint (metadata 'format' is not '", kFormat, "')");
  const nlohmann::json stored = nlohmann::json::parse(f.metadata_value("config"), nullptr, false);
  BYOL_CHECK(!stored.is_discarded() && stored.contains("network"), path,
             ": metadata 'config' is not valid JSON");
  const nlohmann::json ours = network_json(learner.nets.config());
  BYOL_CHECK(stored["network"] == ours, path, ": the checkpoint's network ", stored["network"].dump(),
             " differs from this run's network ", ours.dump());
  const int64_t step = metadata_int(f.metadata(), "step", path), total = learner.train_config().total_steps;
  BYOL_CHECK(step >= 0 && step <= total, path, ": metadata 'step' is ", step, ", expected 0..", total,
             " (this run's total_steps)");
  ByolNetworks& nets = learner.nets;
  load_group(f, kOnline, nets.online, nets.online.params());
  load_stats(f, kOnlineStats, nets.online);
  load_group(f, kTarget, nets.target, nets.target.params());
  load_stats(f, kTargetStats, nets.target);
  load_group(f, "lars_momentum", nets.online, learner.lars.momentum());
  if (learner.probe) {
    BYOL_CHECK(f.has_metadata("probe_adam_steps"), path,
               ": this run has an online probe, the checkpoint has none");
    load_group(f, "probe", learner.probe_params, learner.probe_params.params());
    load_group(f, "probe_adam_m", learner.probe_params, learner.probe_optimizer->first_moment());
    load_group(f, "probe_adam_v", learner.probe_params, learner.probe_optimizer->second_moment());
    const int64_t adam_steps = metadata_int(f.metadata(), "probe_adam_steps", path);
    BYOL_CHECK(adam_steps >= 0, path, ": metadata 'probe_adam_steps' is ", adam_steps, ", expected >= 0");
    learner.probe_optimizer->steps_taken() = adam_steps;
  }
  learner.set_steps_done(step);
  return f.metadata();
}

std::string encoder_config_json(const models::ResNetConfig& cfg) {
  return encoder_json(cfg).dump();
}

models::ResNetConfig encoder_config_from_json(const std::string& text, const std::string& context) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  BYOL_CHECK(!j.is_discarded() && j.is_object(), context, ": not a JSON object: ", text);
  // Integers are read as int64 and range-checked before the narrowing cast, so 2^32 + 18 is not 18.
  auto integer = [&](const nlohmann::json& v, const std::string& key, int64_t lo, int64_t hi) {
    BYOL_CHECK(v.is_number_integer(), context, ": '", key, "' is ", v.dump(), ", expected an integer");
    const int64_t x = v.get<int64_t>();
    BYOL_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(hi), context, ": '", key, "' is ",
               v.dump(), ", expected ", lo, "..", hi);
    BYOL_CHECK(x >= lo && x <= hi, context, ": '", key, "' is ", x, ", expected ", lo, "..", hi);
    return x;
  };
  models::ResNetConfig cfg;
  try {
    BYOL_CHECK(j.contains("depth") && j.contains("width") && j.contains("stem"), context,
               ": needs 'depth', 'width' and 'stem', got ", text);
    cfg.depth = static_cast<int>(integer(j["depth"], "depth", 18, 200));
    cfg.width = static_cast<int>(integer(j["width"], "width", 1, models::kMaxWidth));
    BYOL_CHECK(j["stem"].is_string(), context, ": 'stem' is ", j["stem"].dump(), ", expected a string");
    const std::string stem = j["stem"].get<std::string>();
    BYOL_CHECK(stem == "cifar" || stem == "imagenet", context, ": stem must be 'cifar' or 'imagenet', got '",
               stem, "'");
    cfg.stem = stem == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
    cfg.zero_init_residual = j.value("zero_init_residual", false);
    if (j.contains("base_channels"))
      cfg.base_channels = integer(j["base_channels"], "base_channels", 1, models::kMaxBaseChannels);
    if (j.contains("blocks")) {
      const nlohmann::json& b = j["blocks"];
      BYOL_CHECK(b.is_array() && (b.empty() || b.size() == 4), context, ": 'blocks' is ", b.dump(),
                 ", expected an array of 4 block counts");
      for (size_t s = 0; s < b.size(); ++s)
        cfg.blocks.push_back(
            static_cast<int>(integer(b[s], cat("blocks[", s, "]"), 1, models::kMaxBlocksPerStage)));
    }
  } catch (const nlohmann::json::exception& e) {
    BYOL_FAIL(context, " ", text, ": ", e.what());
  }
  models::check_resnet_config(cfg, context);
  return cfg;
}

void export_encoder(const std::string& path, const models::ParamRegistry& reg, const std::string& prefix,
                    const models::ResNetConfig* config) {
  NamedTensors tensors;
  for (const auto& e : reg.param_entries())
    if (e.name.rfind(prefix, 0) == 0)
      tensors.emplace_back(e.name.substr(prefix.size()), krsc_to_oihw(*e.slot));
  for (const auto& e : reg.stat_entries())
    if (e.name.rfind(prefix, 0) == 0) tensors.emplace_back(e.name.substr(prefix.size()), *e.slot);
  BYOL_CHECK(!tensors.empty(), "export_encoder: no parameters under the prefix '", prefix, "'");
  std::map<std::string, std::string> meta = {{"format", kEncoderFormat}};
  if (config) meta["encoder_config"] = encoder_config_json(*config);
  save_safetensors(path, tensors, meta);
}

ImportReport import_encoder(const std::string& path, const models::ParamRegistry& reg,
                            const std::string& prefix) {
  const SafetensorsFile f = load_safetensors(path);
  ImportReport report;
  std::map<std::string, bool> used;
  auto load = [&](const std::string& full_name, const Tensor& slot) {
    const std::string name = full_name.substr(prefix.size());
    Tensor expected_oihw = slot.dim() == 4 ? krsc_to_oihw(slot) : slot;
    const Tensor& t = f.get(name, expected_oihw.shape(), DType::f32);
    slot.copy_(oihw_to_krsc(t));
    used[name] = true;
    ++report.loaded;
  };
  for (const auto& e : reg.param_entries())
    if (e.name.rfind(prefix, 0) == 0) load(e.name, *e.slot);
  for (const auto& e : reg.stat_entries())
    if (e.name.rfind(prefix, 0) == 0) load(e.name, *e.slot);
  for (const std::string& n : f.names())
    if (!used.count(n)) report.ignored.push_back(n);
  return report;
}

}  // namespace byol
