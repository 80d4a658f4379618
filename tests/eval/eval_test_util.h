// Helpers for the evaluation tests: a temporary folder that removes itself, small encoders, and
// features built from plain vectors.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "byol/evaluation.h"

namespace byol::eval::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "byol_eval_test_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

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
