// The CUDA halves of the op front ends (engine/ops/*.cpp): each front end checks its arguments once for
// both backends, then, for inputs on a GPU, calls the function here, which allocates the outputs on the
// inputs' device, launches the backend (cuDNN, cuBLAS/cuBLASLt, kernels/) on the compute stream and
// records the backward on the autograd tape. Nothing here waits for the GPU (softmax_cross_entropy does
// not read its labels back: an out-of-range label makes the loss NaN on the device).
//
// The CUDA backend runs float32; each function rejects other dtypes with a message that says so.
// This header is plain C++ and is included by the front ends in every build: BYOL_ON_CUDA(op, t, stmt)
// runs stmt in a CUDA build and reports "no kernel for this device" in a CPU-only one, so the
// declarations below are only referenced where they are defined.
#pragma once

#include "engine/cpu/cpu_backend.h"  // ConvGeom
#include "engine/ops.h"
#include "engine/ops/check.h"
#include "engine/optim_ops.h"

#if BYOL_WITH_CUDA
#define BYOL_ON_CUDA(op, t, stmt) stmt
#else
#define BYOL_ON_CUDA(op, t, stmt) ::byol::ops::detail::unsupported_device(op, t)
#endif

namespace byol::ops::detail {

Tensor count_top1_correct_cuda(const Tensor& logits, const Tensor& labels);

// The optimizer ops (engine/optim_ops.h; engine/cuda/optimizers_cuda.cpp): kernels/ema.cu, lars.cu and
// optimizers.cu on the compute stream.
struct AdamWFloats {
  float lr, beta1, beta2, eps, weight_decay, bias1, bias2;
};
void ema_cuda(const Tensor& target, const Tensor& online, double tau);
void lars_step_cuda(const Tensor& w, const Tensor& g, const Tensor& m, const LarsLayout& layout,
                    const LarsHyper& h, const Tensor& trust_out);
void sgd_step_cuda(const Tensor& w, const Tensor& m, const Tensor& g, float lr, float momentum,
                   float weight_decay, bool nesterov);
void adamw_step_cuda(const Tensor& w, const Tensor& m, const Tensor& v, const Tensor& g,
                     const AdamWFloats& h);

void add_inplace_cuda(Tensor& dst, const Tensor& src);

// Tensor::to(DType) between f32, f64 and bf16 on the tensor's GPU.
Tensor cast_cuda(const Tensor& x, DType target);

}  // namespace byol::ops::detail
