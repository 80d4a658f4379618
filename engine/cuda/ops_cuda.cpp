// CUDA halves of the op front ends (see cuda_ops.h). Conventions as on the CPU: outputs and activation
// gradients are fresh tensors (written with =); saved tensors are captured only when a gradient needs
// them; scalar losses and their incoming gradients stay on the device.
#include "engine/cuda/cuda_ops.h"

#include <array>

#include "engine/cuda/blas.h"
#include "engine/cuda/context.h"
#include "engine/cuda/conv_cudnn.h"
#include "kernels/byol_loss.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/metrics.cuh"

namespace byol::ops::detail {
namespace {

void require_f32(const char* op, const char* arg, const Tensor& t) {
  BYOL_CHECK(t.dtype() == DType::f32, op, ": argument '", arg,
             "' expected dtype f32 on a GPU (the CUDA backend runs float32; f64 runs on the CPU), got ",
             t.describe());
}

Tensor like(const Shape& shape, const Tensor& ref) {
  return Tensor::empty(shape, ref.dtype(), ref.device());
}

float* f(const Tensor& t) {
  return t.data<float>();
}
float* f_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

cudaStream_t stream() {
  return cuda::compute_stream();
}

}  // namespace

// --- convolution and pooling -------------------------------------------------------------------------

// --- normalisation -------------------------------------------------------------------------------------

// --- dense ---------------------------------------------------------------------------------------------

Tensor count_top1_correct_cuda(const Tensor& logits, const Tensor& labels) {
  require_f32("count_top1_correct", "logits", logits);
  const int64_t N = logits.size(0), K = logits.size(1);
  Tensor count = like({}, logits);
  if (labels.dtype() == DType::i32) {
    kernels::count_top1_correct(f(logits), labels.data<int32_t>(), N, K, f(count), stream());
  } else {
    kernels::count_top1_correct(f(logits), labels.data<int64_t>(), N, K, f(count), stream());
  }
  return count;
}

// --- elementwise and reductions --------------------------------------------------------------------------

void add_inplace_cuda(Tensor& dst, const Tensor& src) {
  require_f32("add_", "dst", dst);
  Tensor s = src.contiguous();
  kernels::add_inplace(f(dst), f(s), dst.numel(), stream());
}

Tensor cast_cuda(const Tensor& x, DType target) {
  const auto supported = [](DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; };
  BYOL_CHECK(supported(x.dtype()) && supported(target), "Tensor::to(", dtype_name(target), "): casting ",
             x.describe(), " on a GPU supports f32, f64 and bf16; copy it to the CPU for other dtypes");
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), target, x.device());
  kernels::cast(src.raw_data(), static_cast<int>(src.dtype()), out.raw_data(), static_cast<int>(target),
                x.numel(), stream());
  return out;
}

}  // namespace byol::ops::detail
