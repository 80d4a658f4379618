// BYOL_ON_CUDA and the CUDA halves of the optimizer ops. The op front ends (engine/ops/*.cpp) check their
// arguments once, record each backward once, and run the backend for the tensors' device through
// ops::detail::on_backend (engine/ops/check.h): cpu:: functions (engine/cpu/cpu_backend.h) or cuda::
// functions of the same arguments (engine/cuda/cuda_backend.h). Nothing on a GPU waits for it.
//
// This header is plain C++ and is included by the front ends in every build: BYOL_ON_CUDA(op, t, stmt)
// runs stmt in a CUDA build and reports "no kernel for this device" in a CPU-only one, so the CUDA
// functions are only referenced where they are defined.
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

}  // namespace byol::ops::detail
