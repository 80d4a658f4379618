// The CUDA halves of the optimizer ops (engine/optim_ops.h), with the signatures of the CPU loops
// (engine/cpu/optimizers.h): raw f32 device pointers and sizes, launched on the compute stream of the
// current device, nothing waits for the GPU. The front ends (engine/ops/optimizers.cpp) check every
// buffer and call cpu::X or cuda::X by the buffers' device. Plain C++ (no CUDA header); the definitions
// (engine/cuda/optimizers_cuda.cpp) exist in CUDA builds only, reached through BYOL_ON_CUDA.
#pragma once

#include <cstdint>

#include "engine/optim_ops.h"

namespace byol::cuda {

// tau_device / lr_device: where the kernels read tau / the learning rate when it is given as a tensor
// (ops::StepScalar), nullptr to take the number (tau, h.lr).
void ema(float* target, const float* online, int64_t n, float tau, const float* tau_device);
// The layout's packed table is made and uploaded once per device (LarsLayout::device_table).
void lars_step(float* w, const float* g, float* m, const ops::LarsLayout& layout, const ops::LarsHyper& h,
               const float* lr_device, double* trust_out);
void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov);
void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, float bias1, float bias2);

}  // namespace byol::cuda
