// The small networks the fuzz targets load into and make_seeds writes seeds for; both sides must agree,
// or every checkpoint seed is refused for its network before the interesting checks.
#pragma once

#include "byol/learner.h"
#include "tests/tiny_byol.h"

namespace byol::fuzz {

// The learner the checkpoint target loads into: the tests' tiny network, with an online probe.
inline TrainConfig tiny_train() {
  TrainConfig t;
  t.batch_size = 4;
  t.total_steps = 8;
  t.warmup_steps = 1;
  t.probe_classes = 3;
  return t;
}

// The encoder target's explicit configuration (tests/eval/eval_test_util.h's tiny_encoder_config).
inline models::ResNetConfig tiny_encoder() {
  models::ResNetConfig c;
  c.depth = 18;
  c.stem = models::Stem::cifar;
  c.base_channels = 4;
  c.blocks = {1, 1, 1, 1};
  return c;
}

}  // namespace byol::fuzz
