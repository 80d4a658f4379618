// The C++ side of the safetensors interop test (tests/io/interop.py):
//
//   safetensors_tool write-sample PATH [--without-bf16]   writes the sample below with save_safetensors
//   safetensors_tool check-sample PATH                    reads PATH with load_safetensors and checks that
//                                                         it holds the sample (its bf16 tensor optional)
//   safetensors_tool check-bf16 PATH                      checks that PATH holds the sample's bf16 tensor
//                                                         alone, with the sample's metadata
//
// The sample, which interop.py builds the same way with numpy (keep the two in step):
//   weight.f32  F32  [2, 3]  (i - 2.5) / 4 for i = 0..5
//   stats.f64   F64  [3]     1/3, -2, 1e300
//   half.bf16   BF16 [2, 2]  bits 0x3f80 (1), 0xc000 (-2), 0x0001 (smallest subnormal), 0x7f80 (+inf)
//   bytes.u8    U8   [5]     0, 1, 127, 128, 255
//   index.i32   I32  [2, 2]  INT32_MIN, -1, 0, INT32_MAX
//   count.i64   I64  [2]     INT64_MIN, INT64_MAX
//   scalar.f32  F32  []      3.5
//   empty.f32   F32  [0, 4]
//   metadata    {"format": "byol.cpp sample", "step": "42"}
// Exit status: 0 when the check passes, 1 (with the reason on stderr) otherwise, 2 for bad usage.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "engine/io/safetensors.h"

using namespace byol;

namespace {

constexpr char kBf16Name[] = "half.bf16";

NamedTensors sample(bool with_bf16) {
  std::vector<float> w;
  for (int i = 0; i < 6; ++i) w.push_back((static_cast<float>(i) - 2.5f) / 4.0f);
  NamedTensors t;
  t.emplace_back("weight.f32", Tensor::from_vector<float>(w, {2, 3}));
  t.emplace_back("stats.f64", Tensor::from_vector<double>({1.0 / 3.0, -2.0, 1e300}, {3}));
  if (with_bf16) {
    t.emplace_back(kBf16Name, Tensor::from_vector<bf16>({{0x3f80}, {0xc000}, {0x0001}, {0x7f80}}, {2, 2}));
  }
  t.emplace_back("bytes.u8", Tensor::from_vector<uint8_t>({0, 1, 127, 128, 255}, {5}));
  t.emplace_back("index.i32", Tensor::from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0,
                                                            std::numeric_limits<int32_t>::max()},
                                                           {2, 2}));
  t.emplace_back("count.i64",
                 Tensor::from_vector<int64_t>(
                     {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}, {2}));
  t.emplace_back("scalar.f32", Tensor::from_vector<float>({3.5f}, {}));
  t.emplace_back("empty.f32", Tensor::empty({0, 4}));
  return t;
}

const std::map<std::string, std::string> kMetadata = {{"format", "byol.cpp sample"}, {"step", "42"}};

bool same_bytes(const Tensor& a, const Tensor& b) {
  const size_t bytes = static_cast<size_t>(a.numel()) * dtype_size(a.dtype());
  return bytes == 0 || std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), bytes) == 0;
}

// Checks that the file at `path` holds the sample's tensors (all, or only bf16), and its metadata.
void check_sample(const std::string& path, bool bf16_only) {
  const SafetensorsFile f = load_safetensors(path);
  BYOL_CHECK(f.metadata() == kMetadata, path, ": metadata differs from the sample's");
  size_t checked = 0;
  for (const auto& [name, expected] : sample(true)) {
    if (bf16_only && name != kBf16Name) continue;
    if (name == kBf16Name && !bf16_only && !f.contains(name)) {
      std::printf("check-sample: %s has no '%s' (allowed)\n", path.c_str(), kBf16Name);
      continue;
    }
    const Tensor& t = f.get(name, expected.shape(), expected.dtype());
    BYOL_CHECK(same_bytes(t, expected), path, ": tensor '", name, "' holds other values than the sample");
    ++checked;
  }
  BYOL_CHECK(checked == f.size(), path, ": has ", f.size(), " tensors, the sample ", checked);
  std::printf("%s: %zu tensors and the metadata match\n", path.c_str(), checked);
}

int usage() {
  std::fprintf(stderr,
               "usage: safetensors_tool write-sample PATH [--without-bf16]\n"
               "       safetensors_tool check-sample PATH\n"
               "       safetensors_tool check-bf16 PATH\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) return usage();
  const std::string mode = argv[1], path = argv[2], option = argc == 4 ? argv[3] : "";
  try {
    if (mode == "write-sample" && (option.empty() || option == "--without-bf16")) {
      save_safetensors(path, sample(option.empty()), kMetadata);
    } else if ((mode == "check-sample" || mode == "check-bf16") && option.empty()) {
      check_sample(path, mode == "check-bf16");
    } else {
      return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_tool %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
  return 0;
}
