// The CPU loops of the optimizer ops (engine/optim_ops.h), over raw f32 pointers: the per-element
// formulas of engine/math/optimizers.h, the same functions the CUDA kernels call.
#pragma once

#include <cstdint>

#include "engine/optim_ops.h"

namespace byol::cpu {

void ema(float* target, const float* online, int64_t n, float tau);
// h.lr in its number form: the front end reads a tensor-form learning rate before it calls this.
void lars_step(float* w, const float* g, float* m, const ops::LarsLayout& layout, const ops::LarsHyper& h,
               double* trust_out);
void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov);
void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, float bias1, float bias2);

}  // namespace byol::cpu
