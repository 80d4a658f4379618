// Helpers for the evaluation tests: a temporary folder that removes itself, small encoders, and
// features built from plain vectors.
#pragma once

#include "tests/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "byol/evaluation.h"

namespace byol::eval::testing {

using byol::test_util::TempDir;

// ResNet-18 layout with one block per stage and 4 base channels: 32 features, fast on 16 px images.
inline models::ResNetConfig tiny_encoder_config() {
  models::ResNetConfig c;
  c.depth = 18;
  c.stem = models::Stem::cifar;
  c.base_channels = 4;
  c.blocks = {1, 1, 1, 1};
  return c;
}

inline Features make_features(const std::vector<std::vector<float>>& rows,
                              const std::vector<int64_t>& labels) {
  const int64_t n = int64_t(rows.size()), d = n ? int64_t(rows[0].size()) : 0;
  std::vector<float> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return {Tensor::from_vector(flat, {n, d}), Tensor::from_vector(labels, {n})};
}

}  // namespace byol::eval::testing
