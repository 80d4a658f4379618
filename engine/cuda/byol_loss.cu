// Row kernels: one warp per row, lanes striding over the row so every load is coalesced; row dot
// products accumulate in fp32 per lane, are combined across the warp, and the per-row formulas run in
// double (as on the CPU). See byol_loss.cuh for the device-scalar and determinism conventions.
#include <cmath>

#include "engine/cuda/byol_loss.cuh"
#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/grid_sum.cuh"
#include "engine/math/byol_loss.h"

namespace byol::kernels {
namespace {

struct Dots {
  float pp, zz, pz;
};

template <class T>
__device__ Dots row_dots(const T* __restrict__ p, const T* __restrict__ z, int64_t D, int lane) {
  float pp = 0.0f, zz = 0.0f, pz = 0.0f;
  for (int64_t k = lane; k < D; k += kWarp) {
    const float a = static_cast<float>(p[k]), b = static_cast<float>(z[k]);
    pp += a * a;
    zz += b * b;
    pz += a * b;
  }
  return {warp_sum(pp), warp_sum(zz), warp_sum(pz)};
}

template <class T>
__global__ void byol_loss_forward_kernel(const T* __restrict__ p1, const T* __restrict__ z2,
                                         const T* __restrict__ p2, const T* __restrict__ z1, int64_t N,
                                         int64_t D, double* __restrict__ partials,
                                         unsigned* __restrict__ counter, T* __restrict__ loss) {
  const int lane = threadIdx.x % kWarp;
  double acc = 0;  // lane 0's sum of its rows' losses
  for (int64_t i = global_warp(); i < N; i += grid_warps()) {
    const Dots a = row_dots(p1 + i * D, z2 + i * D, D, lane);
    const Dots b = row_dots(p2 + i * D, z1 + i * D, D, lane);
    acc += math::cosine_loss_row(a.pp, a.zz, a.pz);
    acc += math::cosine_loss_row(b.pp, b.zz, b.pz);
  }
  grid_sum_finish(acc, partials, counter, 1.0 / static_cast<double>(N), loss);
}

template <class T>
__device__ void write_cosine_grad(const T* __restrict__ p, const T* __restrict__ z, T* __restrict__ dp,
                                  T* __restrict__ dz, int64_t D, int lane, double row_g) {
  const Dots d = row_dots(p, z, D, lane);
  const math::CosineGrad c = math::cosine_loss_grad(d.pp, d.zz, d.pz, row_g);
  for (int64_t k = lane; k < D; k += kWarp) {
    const double pk = static_cast<double>(p[k]), zk = static_cast<double>(z[k]);
    if (dp) dp[k] = static_cast<T>(c.a_p * zk + c.b_p * pk);
    if (dz) dz[k] = static_cast<T>(c.a_z * pk + c.b_z * zk);
  }
}

template <class T>
__global__ void byol_loss_backward_kernel(const T* __restrict__ p1, const T* __restrict__ z2,
                                          const T* __restrict__ p2, const T* __restrict__ z1,
                                          const T* __restrict__ g, T* __restrict__ dp1, T* __restrict__ dz2,
                                          T* __restrict__ dp2, T* __restrict__ dz1, int64_t N, int64_t D) {
  const int lane = threadIdx.x % kWarp;
  const double row_g = static_cast<double>(g[0]) / static_cast<double>(N);
  for (int64_t i = global_warp(); i < N; i += grid_warps()) {
    const int64_t o = i * D;
    write_cosine_grad(p1 + o, z2 + o, dp1 ? dp1 + o : nullptr, dz2 ? dz2 + o : nullptr, D, lane, row_g);
    write_cosine_grad(p2 + o, z1 + o, dp2 ? dp2 + o : nullptr, dz1 ? dz1 + o : nullptr, D, lane, row_g);
  }
}

template <class T>
__global__ void l2_normalize_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                            T* __restrict__ inv_norm, int64_t N, int64_t D) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t i = global_warp(); i < N; i += grid_warps()) {
    const T* row = x + i * D;
    float ss = 0.0f;
    for (int64_t k = lane; k < D; k += kWarp) ss += static_cast<float>(row[k]) * static_cast<float>(row[k]);
    const T r = static_cast<T>(math::l2_inv_norm(static_cast<double>(warp_sum(ss))));
    if (lane == 0) inv_norm[i] = r;
    for (int64_t k = lane; k < D; k += kWarp) y[i * D + k] = row[k] * r;
  }
}

template <class T>
__global__ void l2_normalize_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                             const T* __restrict__ y, const T* __restrict__ inv_norm,
                                             T* __restrict__ dx, int64_t N, int64_t D) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t i = global_warp(); i < N; i += grid_warps()) {
    const int64_t o = i * D;
    float ss = 0.0f, ydy = 0.0f;
    for (int64_t k = lane; k < D; k += kWarp) {
      ss += static_cast<float>(x[o + k]) * static_cast<float>(x[o + k]);
      ydy += static_cast<float>(y[o + k]) * static_cast<float>(dy[o + k]);
    }
    const bool clamped = math::l2_clamped(static_cast<double>(warp_sum(ss)));
    const T y_dot_dy = static_cast<T>(warp_sum(ydy));
    for (int64_t k = lane; k < D; k += kWarp)
      dx[o + k] = math::l2_normalize_backward(dy[o + k], y[o + k], inv_norm[i], y_dot_dy, clamped);
  }
}

}  // namespace

template <class T>
void byol_loss_forward(const T* p1, const T* z2, const T* p2, const T* z1, int64_t N, int64_t D, T* loss,
                       cudaStream_t stream) {
  const unsigned blocks = grid_rows(N);
  GridSumScratch scratch(blocks, stream);
  byol_loss_forward_kernel<<<blocks, kThreads, 0, stream>>>(p1, z2, p2, z1, N, D, scratch.partials,
                                                            scratch.counter, loss);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void byol_loss_backward(const T* p1, const T* z2, const T* p2, const T* z1, const T* g, T* dp1, T* dz2,
                        T* dp2, T* dz1, int64_t N, int64_t D, cudaStream_t stream) {
  byol_loss_backward_kernel<<<grid_rows(N), kThreads, 0, stream>>>(p1, z2, p2, z1, g, dp1, dz2, dp2, dz1, N,
                                                                   D);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void l2_normalize_forward(const T* x, T* y, T* inv_norm, int64_t N, int64_t D, cudaStream_t stream) {
  if (N == 0) return;
  l2_normalize_forward_kernel<<<grid_rows(N), kThreads, 0, stream>>>(x, y, inv_norm, N, D);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T>
void l2_normalize_backward(const T* dy, const T* x, const T* y, const T* inv_norm, T* dx, int64_t N,
                           int64_t D, cudaStream_t stream) {
  if (N == 0) return;
  l2_normalize_backward_kernel<<<grid_rows(N), kThreads, 0, stream>>>(dy, x, y, inv_norm, dx, N, D);
  BYOL_CUDA_CHECK_LAUNCH();
}

template void byol_loss_forward<float>(const float*, const float*, const float*, const float*, int64_t,
                                       int64_t, float*, cudaStream_t);
template void byol_loss_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                        float*, float*, float*, float*, int64_t, int64_t, cudaStream_t);
template void l2_normalize_forward<float>(const float*, float*, float*, int64_t, int64_t, cudaStream_t);
template void l2_normalize_backward<float>(const float*, const float*, const float*, const float*, float*,
                                           int64_t, int64_t, cudaStream_t);

}  // namespace byol::kernels
