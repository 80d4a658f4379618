// The PyTorch reference step (tests/fixtures/byol_step.safetensors, written by
// tests/reference/byol_step.py): a Learner shaped and configured from the fixture's metadata, with the
// fixture's initial online/target parameters, BN statistics and LARS momentum loaded. Used by the CPU
// reference test and by its GPU twin.
#pragma once

#include <memory>
#include <string>

#include "byol/learner.h"
#include "engine/io/safetensors.h"

namespace byol::test_util {

inline const char* reference_fixture_path() {
  return BYOL_SOURCE_DIR "/tests/fixtures/byol_step.safetensors";
}

inline double fixture_meta(const SafetensorsFile& ref, const char* key) {
  return std::stod(ref.metadata_value(key));
}

inline std::unique_ptr<Learner> learner_from_fixture(const SafetensorsFile& ref) {
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = models::Stem::cifar;
  net.encoder.base_channels = static_cast<int64_t>(fixture_meta(ref, "base_channels"));
  net.projector_hidden = static_cast<int64_t>(fixture_meta(ref, "projector_hidden"));
  net.projection_dim = static_cast<int64_t>(fixture_meta(ref, "projection_dim"));
  net.predictor_hidden = static_cast<int64_t>(fixture_meta(ref, "predictor_hidden"));
  TrainConfig train;
  train.batch_size = static_cast<int64_t>(fixture_meta(ref, "batch"));
  train.total_steps = 100;
  train.warmup_steps = 0;  // lr(0) = base_lr * batch / 256
  train.base_lr = fixture_meta(ref, "lr") * 256.0 / static_cast<double>(train.batch_size);
  train.tau_base = fixture_meta(ref, "tau");  // tau(0) = tau_base
  train.weight_decay = fixture_meta(ref, "weight_decay");
  train.lars_eta = fixture_meta(ref, "eta");
  train.lars_momentum = fixture_meta(ref, "momentum");
  // The objective variants (byol_step.py --beta/--temperature/--no-predictor/--no-target); BYOL without them.
  auto flag = [&](const char* key, bool otherwise) {
    return ref.has_metadata(key) ? fixture_meta(ref, key) != 0 : otherwise;
  };
  train.predictor = flag("predictor", true);
  train.target_network = flag("target_network", true);
  train.stop_gradient = flag("stop_gradient", true);
  if (flag("conv_bf16", false)) {  // bf16 products on float32 activations
    train.precision = TrainConfig::Precision::bf16;
    train.bf16_activations = false;
  }
  if (flag("bf16_activations", false)) {
    train.precision = TrainConfig::Precision::bf16;
    train.bf16_activations = true;
  }
  if (ref.has_metadata("beta"))
    train.objective = {fixture_meta(ref, "beta"), fixture_meta(ref, "temperature")};
  auto learner = std::make_unique<Learner>(net, train);
  const auto& online = learner->nets.online;
  const auto& target = learner->nets.target;
  for (const auto& e : online.param_entries()) {
    ref.copy_to("init.online." + e.name, *e.slot);
    ref.copy_to("init.momentum." + e.name, learner->lars.momentum().window(e.offset, e.shape));
  }
  for (const auto& e : online.stat_entries()) ref.copy_to("init.online_stats." + e.name, *e.slot);
  for (const auto& e : target.param_entries()) ref.copy_to("init.target." + e.name, *e.slot);
  for (const auto& e : target.stat_entries()) ref.copy_to("init.target_stats." + e.name, *e.slot);
  return learner;
}

}  // namespace byol::test_util
