// Helpers for the data tests: a temporary folder that removes itself, and small test images.
#pragma once

#include "tests/temp_dir.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image.h"

namespace byol::data::testing {

using byol::test_util::TempDir;

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  write_file(path, bytes.data(), bytes.size());
}

// A smooth h x w x c image (JPEG-friendly): value = 40 + (3 y + 5 x + 60 c) % 170.
struct TestImage {
  std::vector<uint8_t> pixels;
  int h, w, c;
  ImageView view() const { return {pixels.data(), h, w, c}; }
};

inline TestImage smooth_image(int h, int w, int c, int phase = 0) {
  TestImage t{std::vector<uint8_t>(size_t(h) * w * c), h, w, c};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        t.pixels[(size_t(y) * w + x) * c + k] =
            static_cast<uint8_t>(40 + (3 * y + 5 * x + 60 * k + phase) % 170);
  return t;
}

}  // namespace byol::data::testing
