#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/optimizers.cuh"
#include "engine/cuda/pack.cuh"
#include "engine/math/optimizers.h"

namespace byol::kernels {
namespace {

bool g_force_unpacked = false;  // force_unpacked_optimizers

// Both kernels in packs of V floats (16 bytes when V = 4), then the tail of n % V elements one at a time;
// the per-element step is the CPU's either way (the same bits). Version 1, one float per access, ran
// AdamW at 75-78 % of the copy bandwidth on an H200 (2026-12-04).
template <int V>
__global__ void adamw_kernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                             const float* __restrict__ g, int64_t n, AdamWHyper h) {
  const int64_t packs = n / V;
  for (int64_t p = global_thread(); p < packs; p += grid_threads()) {
    const int64_t i = p * V;
    Pack<float, V> wv = load_pack<V>(static_cast<const float*>(w + i));
    Pack<float, V> mv = load_pack<V>(static_cast<const float*>(m + i));
    Pack<float, V> vv = load_pack<V>(static_cast<const float*>(v + i));
    const Pack<float, V> gv = load_pack<V>(g + i);
#pragma unroll
    for (int k = 0; k < V; ++k)
      math::adamw_update(wv.v[k], mv.v[k], vv.v[k], gv.v[k], h.lr, h.beta1, h.beta2, h.eps, h.weight_decay,
                         h.bias1, h.bias2);
    store_pack<V>(w + i, wv);
    store_pack<V>(m + i, mv);
    store_pack<V>(v + i, vv);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads())
    math::adamw_update(w[i], m[i], v[i], g[i], h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.bias1,
                       h.bias2);
}

template <int V>
__global__ void sgd_kernel(float* __restrict__ w, float* __restrict__ m, const float* __restrict__ g,
                           int64_t n, float lr, float momentum, float weight_decay, bool nesterov) {
  const int64_t packs = n / V;
  for (int64_t p = global_thread(); p < packs; p += grid_threads()) {
    const int64_t i = p * V;
    Pack<float, V> wv = load_pack<V>(static_cast<const float*>(w + i));
    Pack<float, V> mv = load_pack<V>(static_cast<const float*>(m + i));
    const Pack<float, V> gv = load_pack<V>(g + i);
#pragma unroll
    for (int k = 0; k < V; ++k)
      math::sgd_update(wv.v[k], mv.v[k], gv.v[k], weight_decay, lr, momentum, nesterov);
    store_pack<V>(w + i, wv);
    store_pack<V>(m + i, mv);
  }
  for (int64_t i = packs * V + global_thread(); i < n; i += grid_threads())
    math::sgd_update(w[i], m[i], g[i], weight_decay, lr, momentum, nesterov);
}

}  // namespace

void force_unpacked_optimizers(bool on) {
  g_force_unpacked = on;
}

void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, const AdamWHyper& h,
                cudaStream_t stream) {
  if (n == 0) return;
  with_pack<float>(!g_force_unpacked && pack_aligned<kPack<float>>(w, m, v, g), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    adamw_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(w, m, v, g, n, h);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov, cudaStream_t stream) {
  if (n == 0) return;
  with_pack<float>(!g_force_unpacked && pack_aligned<kPack<float>>(w, m, g), [&](auto pack) {
    constexpr int V = decltype(pack)::value;
    sgd_kernel<V><<<grid_1d(n / V), kThreads, 0, stream>>>(w, m, g, n, lr, momentum, weight_decay, nesterov);
  });
  BYOL_CUDA_CHECK_LAUNCH();
}

}  // namespace byol::kernels
