#include "apps/pretrain_config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "apps/device_arg.h"
#include "byol/schedules.h"
#include "data/augment.h"
#include "engine/common.h"

namespace byol::apps {

namespace {

// A TOML basic string: quotes, backslashes and control characters escaped, so any value (a path with a
// quote or a newline) reads back as itself.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// The shortest text that reads back as the same double (finite: validate() and the setters see to it).
std::string toml_real(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  BYOL_CHECK(ec == std::errc() && std::isfinite(v), "to_toml: cannot write the number ", v);
  return std::string(buf, end);
}

// Whether what to_toml writes for `s` reads back as `s` (not for invalid UTF-8, which TOML cannot hold).
bool reads_back(const std::string& s) {
  try {
    const toml::table t = toml::parse("v = " + toml_string(s));
    return t["v"].value<std::string>() == s;
  } catch (const toml::parse_error&) {
    return false;
  }
}

// One setter per key: it reads a TOML node of the right type into the config, or explains the mismatch.
using Setter = std::function<void(PretrainConfig&, const toml::node&, const std::string& where)>;

// The value must fit the field's type before the cast: 4294967328 is not an int (cast, it would be 32).
template <class T>
Setter integer(T PretrainConfig::*field) {
  return [field](PretrainConfig& c, const toml::node& n, const std::string& where) {
    auto v = n.as_integer();
    BYOL_CHECK(v, where, ": expected an integer");
    const int64_t x = v->get();
    BYOL_CHECK(std::in_range<T>(x), where, ": expected an integer in ", +std::numeric_limits<T>::min(), "..",
               +std::numeric_limits<T>::max(), ", got ", x);
    c.*field = static_cast<T>(x);
  };
}
Setter real(double PretrainConfig::*field) {
  return [field](PretrainConfig& c, const toml::node& n, const std::string& where) {
    auto v = n.value<double>();
    BYOL_CHECK(v && (n.is_floating_point() || n.is_integer()), where, ": expected a number");
    BYOL_CHECK(std::isfinite(*v), where, ": expected a finite number, got ", *v);
    c.*field = *v;
  };
}
Setter text(std::string PretrainConfig::*field) {
  return [field](PretrainConfig& c, const toml::node& n, const std::string& where) {
    auto v = n.value<std::string>();
    BYOL_CHECK(v && n.is_string(), where, ": expected a string");
    BYOL_CHECK(reads_back(*v), where,
               ": expected valid UTF-8 text (the configuration is written back as TOML)");
    c.*field = *v;
  };
}
Setter boolean(bool PretrainConfig::*field) {
  return [field](PretrainConfig& c, const toml::node& n, const std::string& where) {
    auto v = n.value<bool>();
    BYOL_CHECK(v && n.is_boolean(), where, ": expected true or false");
    c.*field = *v;
  };
}

const std::map<std::string, Setter>& setters() {
  using C = PretrainConfig;
  static const std::map<std::string, Setter> s = {
      {"data.train", text(&C::train)},
      {"data.knn_train", text(&C::knn_train)},
      {"data.knn_test", text(&C::knn_test)},
      {"data.knn_train_images", integer(&C::knn_train_images)},
      {"data.knn_test_images", integer(&C::knn_test_images)},
      {"data.side", integer(&C::side)},
      {"data.normalization", text(&C::normalization)},
      {"data.workers", integer(&C::workers)},
      {"data.skip_corrupt", boolean(&C::skip_corrupt)},
      {"data.augment_on", text(&C::augment_on)},
      {"augment.crop_area_min", real(&C::crop_area_min)},
      {"augment.jitter_p", real(&C::jitter_p)},
      {"augment.jitter_strength", real(&C::jitter_strength)},
      {"augment.jitter", text(&C::jitter)},
      {"augment.grayscale_p", real(&C::grayscale_p)},
      {"augment.blur_p_view1", real(&C::blur_p_view1)},
      {"augment.blur_p_view2", real(&C::blur_p_view2)},
      {"augment.solarize_p_view1", real(&C::solarize_p_view1)},
      {"augment.solarize_p_view2", real(&C::solarize_p_view2)},
      {"model.depth", integer(&C::depth)},
      {"model.width", integer(&C::width)},
      {"model.stem", text(&C::stem)},
      {"model.base_channels", integer(&C::base_channels)},
      {"model.projector_hidden", integer(&C::projector_hidden)},
      {"model.projection_dim", integer(&C::projection_dim)},
      {"model.predictor_hidden", integer(&C::predictor_hidden)},
      {"model.projector_depth", integer(&C::projector_depth)},
      {"model.predictor_depth", integer(&C::predictor_depth)},
      {"train.epochs", real(&C::epochs)},
      {"train.batch_size", integer(&C::batch_size)},
      {"train.preset", integer(&C::preset)},
      {"train.base_lr", real(&C::base_lr)},
      {"train.weight_decay", real(&C::weight_decay)},
      {"train.tau_base", real(&C::tau_base)},
      {"train.warmup_epochs", real(&C::warmup_epochs)},
      {"train.probe_lr", real(&C::probe_lr)},
      {"train.seed", integer(&C::seed)},
      {"train.target_init", text(&C::target_init)},
      {"train.predictor", boolean(&C::predictor)},
      {"train.target_network", boolean(&C::target_network)},
      {"train.stop_gradient", boolean(&C::stop_gradient)},
      {"train.beta", real(&C::beta)},
      {"train.temperature", real(&C::temperature)},
      {"train.accumulation_steps", integer(&C::accumulation_steps)},
      {"train.tau_schedule", text(&C::tau_schedule)},
      {"train.precision", text(&C::precision)},
      {"train.cuda_graph", boolean(&C::cuda_graph)},
      {"train.cpu_bf16_activations", boolean(&C::cpu_bf16_activations)},
      {"train.threads", integer(&C::threads)},
      {"train.sync_bn", boolean(&C::sync_bn)},
      {"run.out", text(&C::out)},
      {"run.log_every", integer(&C::log_every)},
      {"run.knn_every", integer(&C::knn_every)},
      {"run.checkpoint_every", integer(&C::checkpoint_every)},
      {"run.keep_checkpoints", integer(&C::keep_checkpoints)},
      {"run.max_steps", integer(&C::max_steps)},
      {"run.device", text(&C::device)},
      {"run.tf32", boolean(&C::tf32)},
  };
  return s;
}

// Levenshtein distance, for "did you mean" on an unknown key.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

void apply(PretrainConfig& cfg, const std::string& key, const toml::node& node, const std::string& where) {
  auto it = setters().find(key);
  if (it == setters().end()) {
    // The nearest known key, when it is near: a typo or a key in the wrong section.
    std::string nearest;
    size_t best = 4;  // at most 3 edits, and fewer than half the key
    for (const auto& [k, _] : setters()) {
      const size_t d = edit_distance(key, k);
      if (d < best && 2 * d < key.size()) best = d, nearest = k;
    }
    if (!nearest.empty()) BYOL_FAIL(where, ": unknown key; did you mean '", nearest, "'?");
    std::string known;
    for (const auto& [k, _] : setters())
      if (k.substr(0, k.find('.')) == key.substr(0, key.find('.'))) known += (known.empty() ? "" : ", ") + k;
    BYOL_FAIL(where, ": unknown key", known.empty() ? " (sections: data, augment, model, train, run)" : "",
              known.empty() ? "" : " (keys of that section: ", known, known.empty() ? "" : ")");
  }
  it->second(cfg, node, where);
}

void load_config_unchecked(PretrainConfig& cfg, const std::string& path,
                           const std::vector<std::string>& overrides) {
  std::set<std::string> given;  // every key the file or a --set named
  if (!path.empty()) {
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      BYOL_FAIL(path, ":", e.source().begin.line, ":", e.source().begin.column, ": ", e.description());
    }
    for (const auto& [section, value] : root) {
      const std::string sec(section.str());
      const toml::table* t = value.as_table();
      BYOL_CHECK(t, path, ": '", sec, "' must be a table ([", sec, "])");
      for (const auto& [key, node] : *t) {
        const std::string full = sec + "." + std::string(key.str());
        apply(cfg, full, node, path + ": key '" + full + "'");
        given.insert(full);
      }
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    BYOL_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "': expected section.key=value");
    const std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    // Parse the value as TOML (numbers, booleans, quoted strings); bare words are taken as strings.
    toml::table t;
    try {
      t = toml::parse("v = " + value);
    } catch (const toml::parse_error&) {
      t = toml::table{{"v", value}};
    }
    apply(cfg, key, *t.get("v"), "--set " + key);
    given.insert(key);
  }
  // train.preset sets the paper's base_lr, weight_decay and tau_base for its length, except those the file
  // or a --set gives explicitly: an explicit key wins, and --print-config shows what the run will use. (An
  // unknown preset is left to validate(), which names the key.)
  if (cfg.preset == 40 || cfg.preset == 100 || cfg.preset == 300 || cfg.preset == 1000) {
    const Preset& p = preset_for_epochs(cfg.preset);
    if (!given.count("train.base_lr")) cfg.base_lr = p.base_lr;
    if (!given.count("train.weight_decay")) cfg.weight_decay = p.weight_decay;
    if (!given.count("train.tau_base")) cfg.tau_base = p.tau_base;
  }
}

}  // namespace

void load_config(PretrainConfig& cfg, const std::string& path, const std::vector<std::string>& overrides) {
  with_context(path.empty() ? std::string("the command line's --set options") : path,
               [&] { load_config_unchecked(cfg, path, overrides); });
}

void validate(const PretrainConfig& c) {
  auto need = [](bool ok, const char* key, const std::string& what) {
    BYOL_CHECK(ok, "config key '", key, "': ", what);
  };
  need(c.side >= 8 && c.side <= 1024, "data.side", cat("expected 8..1024, got ", c.side));
  need(c.workers >= 0 && c.workers <= 256, "data.workers", cat("expected 0..256, got ", c.workers));
  need(c.knn_train_images >= 0 && c.knn_test_images >= 0, "data.knn_train_images", "expected >= 0");
  need(c.knn_train.empty() == c.knn_test.empty(), "data.knn_train",
       "set both data.knn_train and data.knn_test, or neither");
  need(data::Normalization::named(c.normalization).has_value(), "data.normalization",
       cat("expected ", data::Normalization::kNames, ", got '", c.normalization, "'"));
  need(c.crop_area_min > 0 && c.crop_area_min <= 1, "augment.crop_area_min",
       cat("expected 0 < value <= 1, got ", c.crop_area_min));
  need(c.jitter_strength >= 0 && c.jitter_strength <= 2.5, "augment.jitter_strength",
       cat("expected 0..2.5, got ", c.jitter_strength));
  need(c.tau_schedule == "cosine" || c.tau_schedule == "constant", "train.tau_schedule",
       cat("expected \"cosine\" or \"constant\", got '", c.tau_schedule, "'"));
  need(c.augment_on == "cpu" || c.augment_on == "gpu", "data.augment_on",
       cat("expected \"cpu\" or \"gpu\", got '", c.augment_on, "'"));
  need(c.precision == "auto" || c.precision == "fp32" || c.precision == "bf16", "train.precision",
       cat("expected \"auto\", \"fp32\" or \"bf16\", got '", c.precision, "'"));
  need(c.target_init == "copy" || c.target_init == "random", "train.target_init",
       cat("expected \"copy\" or \"random\", got '", c.target_init, "'"));
  need(c.jitter == "official" || c.jitter == "torchvision", "augment.jitter",
       cat("expected \"official\" or \"torchvision\", got '", c.jitter, "'"));
  for (auto [key, v] : {std::pair{"augment.jitter_p", c.jitter_p},
                        {"augment.grayscale_p", c.grayscale_p},
                        {"augment.blur_p_view1", c.blur_p_view1},
                        {"augment.blur_p_view2", c.blur_p_view2},
                        {"augment.solarize_p_view1", c.solarize_p_view1},
                        {"augment.solarize_p_view2", c.solarize_p_view2}})
    need(v >= 0 && v <= 1, key, cat("a probability: expected 0..1, got ", v));
  need(c.depth == 18 || c.depth == 34 || c.depth == 50 || c.depth == 101 || c.depth == 152 || c.depth == 200,
       "model.depth", cat("expected 18, 34, 50, 101, 152 or 200, got ", c.depth));
  need(c.width == 1 || c.width == 2 || c.width == 4, "model.width", cat("expected 1, 2 or 4, got ", c.width));
  need(c.stem == "imagenet" || c.stem == "cifar", "model.stem",
       cat("expected imagenet or cifar, got '", c.stem, "'"));
  need(c.base_channels >= 1 && c.base_channels <= 256, "model.base_channels",
       cat("expected 1..256, got ", c.base_channels));
  need(c.projector_hidden >= 1 && c.projection_dim >= 1 && c.predictor_hidden >= 1, "model.projector_hidden",
       "head sizes must be positive");
  need(c.projector_depth >= 1 && c.projector_depth <= 8, "model.projector_depth",
       cat("expected 1..8 linear layers, got ", c.projector_depth));
  need(c.predictor_depth >= 1 && c.predictor_depth <= 8, "model.predictor_depth",
       cat("expected 1..8 linear layers, got ", c.predictor_depth));
  // epochs x steps per epoch must fit the step counter: a million epochs is far beyond any real run.
  need(c.epochs > 0 && c.epochs <= 1e6, "train.epochs",
       cat("expected 0 < epochs <= 1000000, got ", c.epochs));
  need(c.batch_size >= 2, "train.batch_size", cat("expected >= 2, got ", c.batch_size));
  need(c.preset == 0 || c.preset == 40 || c.preset == 100 || c.preset == 300 || c.preset == 1000,
       "train.preset", cat("expected 0 (none), 40, 100, 300 or 1000, got ", c.preset));
  need(c.base_lr >= 0 && c.base_lr <= 100, "train.base_lr", cat("expected 0..100, got ", c.base_lr));
  need(c.weight_decay >= 0 && c.weight_decay < 1, "train.weight_decay",
       cat("expected 0..1, got ", c.weight_decay));
  need(c.tau_base >= 0 && c.tau_base <= 1, "train.tau_base", cat("expected 0..1, got ", c.tau_base));
  need(c.stop_gradient || !c.target_network, "train.stop_gradient",
       "false needs train.target_network = false (the target network's projections carry no gradient)");
  need(c.beta >= 0 && c.beta <= 1, "train.beta", cat("expected 0..1, got ", c.beta));
  need(c.accumulation_steps >= 1 && c.batch_size % c.accumulation_steps == 0, "train.accumulation_steps",
       cat("expected a divisor of train.batch_size (", c.batch_size, "), got ", c.accumulation_steps));
  need(c.temperature > 0 && c.temperature <= 100, "train.temperature",
       cat("expected 0 < value <= 100, got ", c.temperature));
  need(c.warmup_epochs >= 0 && c.warmup_epochs <= c.epochs, "train.warmup_epochs",
       cat("expected 0..train.epochs (", c.epochs, "), got ", c.warmup_epochs));
  need(c.probe_lr >= 0, "train.probe_lr", "expected >= 0");
  need(c.threads >= 0 && c.threads <= 1024, "train.threads", cat("expected 0..1024, got ", c.threads));
  need(!c.out.empty(), "run.out", "must not be empty");
  need(c.log_every >= 1, "run.log_every", cat("expected >= 1, got ", c.log_every));
  need(c.knn_every >= 0, "run.knn_every", "expected >= 0");
  need(c.checkpoint_every >= 1, "run.checkpoint_every", cat("expected >= 1, got ", c.checkpoint_every));
  need(c.keep_checkpoints >= 1, "run.keep_checkpoints", cat("expected >= 1, got ", c.keep_checkpoints));
  need(c.max_steps >= 0, "run.max_steps", "expected >= 0");
  need(valid_device_name(c.device), "run.device",
       cat("expected auto, cpu, cuda or cuda:N, got '", c.device, "'"));
}

std::string to_toml(const PretrainConfig& c) {
  std::ostringstream os;
  auto q = toml_string;
  auto r = toml_real;
  os << "[data]\ntrain = " << q(c.train) << "\nknn_train = " << q(c.knn_train)
     << "\nknn_test = " << q(c.knn_test) << "\nknn_train_images = " << c.knn_train_images
     << "\nknn_test_images = " << c.knn_test_images << "\nside = " << c.side
     << "\nnormalization = " << q(c.normalization) << "\nworkers = " << c.workers
     << "\nskip_corrupt = " << (c.skip_corrupt ? "true" : "false") << "\naugment_on = " << q(c.augment_on)
     << "\n\n[augment]\ncrop_area_min = " << r(c.crop_area_min) << "\njitter_p = " << r(c.jitter_p)
     << "\njitter_strength = " << r(c.jitter_strength) << "\njitter = " << q(c.jitter)
     << "\ngrayscale_p = " << r(c.grayscale_p) << "\nblur_p_view1 = " << r(c.blur_p_view1)
     << "\nblur_p_view2 = " << r(c.blur_p_view2) << "\nsolarize_p_view1 = " << r(c.solarize_p_view1)
     << "\nsolarize_p_view2 = " << r(c.solarize_p_view2) << "\n\n[model]\ndepth = " << c.depth
     << "\nwidth = " << c.width << "\nstem = " << q(c.stem) << "\nbase_channels = " << c.base_channels
     << "\nprojector_hidden = " << c.projector_hidden << "\nprojection_dim = " << c.projection_dim
     << "\npredictor_hidden = " << c.predictor_hidden << "\nprojector_depth = " << c.projector_depth
     << "\npredictor_depth = " << c.predictor_depth << "\n\n[train]\nepochs = " << r(c.epochs)
     << "\nbatch_size = " << c.batch_size << "\npreset = " << c.preset << "\nbase_lr = " << r(c.base_lr)
     << "\nweight_decay = " << r(c.weight_decay) << "\ntau_base = " << r(c.tau_base)
     << "\nwarmup_epochs = " << r(c.warmup_epochs) << "\nprobe_lr = " << r(c.probe_lr)
     << "\nseed = " << c.seed << "\ntarget_init = " << q(c.target_init)
     << "\npredictor = " << (c.predictor ? "true" : "false")
     << "\ntarget_network = " << (c.target_network ? "true" : "false")
     << "\nstop_gradient = " << (c.stop_gradient ? "true" : "false") << "\nbeta = " << r(c.beta)
     << "\ntemperature = " << r(c.temperature) << "\naccumulation_steps = " << c.accumulation_steps
     << "\ntau_schedule = " << q(c.tau_schedule) << "\nprecision = " << q(c.precision)
     << "\ncuda_graph = " << (c.cuda_graph ? "true" : "false")
     << "\ncpu_bf16_activations = " << (c.cpu_bf16_activations ? "true" : "false")
     << "\nthreads = " << c.threads << "\nsync_bn = " << (c.sync_bn ? "true" : "false")
     << "\n\n[run]\nout = " << q(c.out) << "\nlog_every = " << c.log_every << "\nknn_every = " << c.knn_every
     << "\ncheckpoint_every = " << c.checkpoint_every << "\nkeep_checkpoints = " << c.keep_checkpoints
     << "\nmax_steps = " << c.max_steps << "\ndevice = " << q(c.device)
     << "\ntf32 = " << (c.tf32 ? "true" : "false") << "\n";
  return os.str();
}

}  // namespace byol::apps
