// The smallest BYOL networks the tests train: ResNet-18 layout with one block per stage and 2 base
// channels (CIFAR stem), heads 8 -> 4.
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

}  // namespace byol::test_util
