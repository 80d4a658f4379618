// The smallest BYOL networks the tests train: ResNet-18 layout with one block per stage and 2 base
// channels (CIFAR stem), heads 8 -> 4; and a short schedule for them.
#pragma once

#include "byol/learner.h"

namespace byol::test_util {

inline NetworkConfig tiny_network() {
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = models::Stem::cifar;
  net.encoder.base_channels = 2;
  net.encoder.blocks = {1, 1, 1, 1};
  net.projector_hidden = 8;
  net.projection_dim = 4;
  net.predictor_hidden = 8;
  return net;
}

// A short training schedule for it: batches of 4, 10 steps (2 of warm-up), LARS at lr 2, tau 0.9, a probe of
// 3 classes (used only when labels are passed).
inline TrainConfig tiny_train(uint64_t seed) {
  TrainConfig t;
  t.batch_size = 4;
  t.total_steps = 10;
  t.warmup_steps = 2;
  t.base_lr = 2.0;
  t.weight_decay = 1e-3;
  t.tau_base = 0.9;
  t.probe_classes = 3;
  t.seed = seed;
  return t;
}

}  // namespace byol::test_util
