#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/ema.cuh"
#include "engine/math/optimizers.h"

namespace byol::kernels {
namespace {

// tau from memory when tau_device is set (a captured graph's per-step value), else the argument.
__device__ __forceinline__ float tau_of(const float* tau_device, float tau) {
  return tau_device ? *tau_device : tau;
}

__global__ void ema_update_vec4_kernel(float4* __restrict__ target, const float4* __restrict__ online,
                                       int64_t n4, const float* __restrict__ tau_device, float tau_arg) {
  const float tau = tau_of(tau_device, tau_arg);
  for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
    float4 t = target[i];
    const float4 o = online[i];
    t.x = math::ema_update(t.x, o.x, tau);
    t.y = math::ema_update(t.y, o.y, tau);
    t.z = math::ema_update(t.z, o.z, tau);
    t.w = math::ema_update(t.w, o.w, tau);
    target[i] = t;
  }
}

__global__ void ema_update_kernel(float* __restrict__ target, const float* __restrict__ online, int64_t n,
                                  const float* __restrict__ tau_device, float tau_arg) {
  const float tau = tau_of(tau_device, tau_arg);
  for (int64_t i = global_thread(); i < n; i += grid_threads())
    target[i] = math::ema_update(target[i], online[i], tau);
}

}  // namespace

void ema_update(float* target, const float* online, int64_t n, double tau, cudaStream_t stream,
                const float* tau_device) {
  if (n == 0) return;
  const float ftau = static_cast<float>(tau);
  const bool aligned =
      reinterpret_cast<uintptr_t>(target) % 16 == 0 && reinterpret_cast<uintptr_t>(online) % 16 == 0;
  if (aligned && n % 4 == 0) {
    ema_update_vec4_kernel<<<grid_1d(n / 4), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(target), reinterpret_cast<const float4*>(online), n / 4, tau_device, ftau);
  } else {
    ema_update_kernel<<<grid_1d(n), kThreads, 0, stream>>>(target, online, n, tau_device, ftau);
  }
  BYOL_CUDA_CHECK_LAUNCH();
}

}  // namespace byol::kernels
