// Row kernels: one warp per row, lanes striding over the row so every load is coalesced; row dot
// products accumulate in fp32 per lane, are combined across the warp, and the per-row formulas run in
// double (as on the CPU). See byol_loss.cuh for the device-scalar and determinism conventions.
#include <cmath>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/byol_loss.cuh"
#include "kernels/common.cuh"
#include "kernels/math/byol_loss_math.h"

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

// Adds `value` (held by lane 0 of each warp) over the whole grid and stores scale * total in out[0].
// The last block to arrive adds the per-block partials in block order, so the result is deterministic.
template <class T>
__device__ void grid_sum_finish(double value, double* __restrict__ block_partials,
                                unsigned* __restrict__ counter, double scale, T* __restrict__ out) {
  __shared__ double warp_sums[kThreads / kWarp];
  __shared__ bool is_last;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x) / kWarp; ++w) s += warp_sums[w];
    block_partials[blockIdx.x] = s;
    __threadfence();  // publish the partial before taking a ticket
    const unsigned ticket = atomicAdd(counter, 1u);
    is_last = ticket == gridDim.x - 1;
  }
  __syncthreads();
  if (is_last && threadIdx.x == 0) {
    __threadfence();
    const volatile double* partials = block_partials;
    double total = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) total += partials[b];
    out[0] = static_cast<T>(total * scale);
    *counter = 0;
  }
}

// Scratch of the grid reduction: one double per block, then the arrival counter (zeroed here).
struct GridSumScratch {
  cuda::DeviceBuffer buffer;
  double* partials;
  unsigned* counter;
  GridSumScratch(unsigned blocks, cudaStream_t stream) : buffer(blocks * sizeof(double) + sizeof(unsigned)) {
    partials = buffer.as<double>();
    counter = reinterpret_cast<unsigned*>(partials + blocks);
    BYOL_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
  }
};

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
    acc += 2.0 - 2.0 * static_cast<double>(a.pz) * math::l2_inv_norm(static_cast<double>(a.pp)) *
                     math::l2_inv_norm(static_cast<double>(a.zz));
    acc += 2.0 - 2.0 * static_cast<double>(b.pz) * math::l2_inv_norm(static_cast<double>(b.pp)) *
                     math::l2_inv_norm(static_cast<double>(b.zz));
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

template <class T, class I>
__global__ void softmax_cross_entropy_forward_kernel(const T* __restrict__ logits,
                                                     const I* __restrict__ labels, T* __restrict__ probs,
                                                     int64_t N, int64_t K, double* __restrict__ partials,
                                                     unsigned* __restrict__ counter, T* __restrict__ loss) {
  const int lane = threadIdx.x % kWarp;
  double acc = 0;
  for (int64_t i = global_warp(); i < N; i += grid_warps()) {
    const T* row = logits + i * K;
    double mx = -INFINITY;
    for (int64_t k = lane; k < K; k += kWarp) mx = fmax(mx, static_cast<double>(row[k]));
    mx = warp_max(mx);
    double z = 0;
    for (int64_t k = lane; k < K; k += kWarp) z += exp(static_cast<double>(row[k]) - mx);
    const double log_z = mx + log(warp_sum(z));
    for (int64_t k = lane; k < K; k += kWarp)
      probs[i * K + k] = static_cast<T>(exp(static_cast<double>(row[k]) - log_z));
    // A label outside [0, K) is never read through: it makes the loss NaN (the CUDA path does not read
    // the labels back to validate them, so that the BYOL step's probe never waits for the GPU).
    const int64_t label = static_cast<int64_t>(labels[i]);
    acc += label >= 0 && label < K ? log_z - static_cast<double>(row[label]) : NAN;
  }
  grid_sum_finish(acc, partials, counter, 1.0 / static_cast<double>(N), loss);
}

template <class T, class I>
__global__ void softmax_cross_entropy_backward_kernel(const T* __restrict__ probs,
                                                      const I* __restrict__ labels, const T* __restrict__ g,
                                                      T* __restrict__ dlogits, int64_t N, int64_t K) {
  const T s = static_cast<T>(static_cast<double>(g[0]) / static_cast<double>(N));
  for (int64_t i = global_thread(); i < N * K; i += grid_threads()) {
    const int64_t row = i / K, k = i % K, label = static_cast<int64_t>(labels[row]);
    dlogits[i] = label >= 0 && label < K ? probs[i] * s - (k == label ? s : T(0)) : static_cast<T>(NAN);
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

template <class T, class I>
void softmax_cross_entropy_forward(const T* logits, const I* labels, T* probs, T* loss, int64_t N, int64_t K,
                                   cudaStream_t stream) {
  const unsigned blocks = grid_rows(N);
  GridSumScratch scratch(blocks, stream);
  softmax_cross_entropy_forward_kernel<<<blocks, kThreads, 0, stream>>>(
      logits, labels, probs, N, K, scratch.partials, scratch.counter, loss);
  BYOL_CUDA_CHECK_LAUNCH();
}

template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K, cudaStream_t stream) {
  softmax_cross_entropy_backward_kernel<<<grid_1d(N * K), kThreads, 0, stream>>>(probs, labels, g, dlogits, N,
                                                                                 K);
  BYOL_CUDA_CHECK_LAUNCH();
}

template void byol_loss_forward<float>(const float*, const float*, const float*, const float*, int64_t,
                                       int64_t, float*, cudaStream_t);
template void byol_loss_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                        float*, float*, float*, float*, int64_t, int64_t, cudaStream_t);
template void l2_normalize_forward<float>(const float*, float*, float*, int64_t, int64_t, cudaStream_t);
template void l2_normalize_backward<float>(const float*, const float*, const float*, const float*, float*,
                                           int64_t, int64_t, cudaStream_t);
template void softmax_cross_entropy_forward<float, int32_t>(const float*, const int32_t*, float*, float*,
                                                            int64_t, int64_t, cudaStream_t);
template void softmax_cross_entropy_forward<float, int64_t>(const float*, const int64_t*, float*, float*,
                                                            int64_t, int64_t, cudaStream_t);
template void softmax_cross_entropy_backward<float, int32_t>(const float*, const int32_t*, const float*,
                                                             float*, int64_t, int64_t, cudaStream_t);
template void softmax_cross_entropy_backward<float, int64_t>(const float*, const int64_t*, const float*,
                                                             float*, int64_t, int64_t, cudaStream_t);

}  // namespace byol::kernels
