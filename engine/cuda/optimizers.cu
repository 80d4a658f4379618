#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/optimizers.cuh"
#include "engine/math/optimizers.h"

namespace byol::kernels {
namespace {

__global__ void adamw_kernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                             const float* __restrict__ g, int64_t n, AdamWHyper h) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    math::adamw_update(w[i], m[i], v[i], g[i], h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.bias1,
                       h.bias2);
}

__global__ void sgd_kernel(float* __restrict__ w, float* __restrict__ m, const float* __restrict__ g,
                           int64_t n, float lr, float momentum, float weight_decay, bool nesterov) {
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    math::sgd_update(w[i], m[i], g[i], weight_decay, lr, momentum, nesterov);
}

}  // namespace

void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, const AdamWHyper& h,
                cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<grid_1d(n), kThreads, 0, stream>>>(w, m, v, g, n, h);
  BYOL_CUDA_CHECK_LAUNCH();
}

void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov, cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<grid_1d(n), kThreads, 0, stream>>>(w, m, g, n, lr, momentum, weight_decay, nesterov);
  BYOL_CUDA_CHECK_LAUNCH();
}

}  // namespace byol::kernels
