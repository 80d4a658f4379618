// The evaluation heads' optimizers over a registry's flat buffers on the GPU: one launch per step over
// the whole buffer, in packs of 4 floats where every pointer is 16-byte aligned, no host synchronisation. The
// per-element steps are math::adamw_update and math::sgd_update (engine/math/optimizers.h), the same
// functions the CPU loops call. Alignment gaps between tensors hold zero parameters and zero gradients, which
// both updates keep at zero, so the kernels need no segment table.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

struct AdamWHyper {
  float lr, beta1, beta2, eps, weight_decay;
  float bias1, bias2;  // 1 - beta1^t, 1 - beta2^t for the step t being taken
};

// AdamW (torch.optim.AdamW) on n elements: w, m, v updated in place from g.
void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, const AdamWHyper& h,
                cudaStream_t stream);

// SGD with momentum (torch.optim.SGD, dampening 0) on n elements: w, m updated in place from g.
void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov, cudaStream_t stream);

// Lab switch: with `on`, both kernels read and write one float at a time (version 1's access) instead of
// packs of 4 floats. The same bits either way.
void force_unpacked_optimizers(bool on);

}  // namespace byol::kernels
