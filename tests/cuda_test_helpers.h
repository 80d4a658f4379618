// Helpers shared by the [cuda] tests (test_cuda_ops.cpp, test_cuda_backend.cpp): the relative error of a
// GPU result against the CPU one, NaN poisoning of the device pool, and a scoped TF32 setting.
#pragma once

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/tensor.h"

namespace byol::cuda_test {

inline const Device kGpu = Device::cuda();

// ||got - want|| / ||want|| over all elements; infinite where got is not finite but want is.
inline double rel_error(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<float> a = got.contiguous().to_vector<float>(), b = want.contiguous().to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) && std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

// Fills `floats` of the stream-ordered pool with NaN and frees them at once: the next allocations reuse
// this memory, so an output element that a kernel does not write reads back as NaN.
inline void poison_device_pool(int64_t floats) {
  Tensor::full({floats}, std::nan(""), DType::f32, kGpu);
}

// Sets cuBLAS/cuDNN TF32 for a scope and restores the previous setting.
struct Tf32Guard {
  bool previous;
  explicit Tf32Guard(bool on) : previous(cuda::allow_tf32()) { cuda::set_allow_tf32(on); }
  ~Tf32Guard() { cuda::set_allow_tf32(previous); }
};

}  // namespace byol::cuda_test
