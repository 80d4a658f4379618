// Softmax cross-entropy (one warp per row; the row's max, sum and log Z in double, as on the CPU) and the
// top-1 count. See cross_entropy.cuh for the device-scalar and determinism conventions.
#include <cmath>
#include <cstdint>

#include "engine/cuda/common.cuh"
#include "engine/cuda/cross_entropy.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/grid_sum.cuh"
#include "engine/math/cross_entropy.h"

namespace byol::kernels {
namespace {

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
    const double log_z = math::log_partition(mx, warp_sum(z));
    for (int64_t k = lane; k < K; k += kWarp) probs[i * K + k] = math::softmax_prob(row[k], log_z);
    // A label outside [0, K) is never read through: it makes the loss NaN.
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
    dlogits[i] =
        label >= 0 && label < K ? math::cross_entropy_grad(probs[i], k == label, s) : static_cast<T>(NAN);
  }
}

// The first index of a row's largest value, as math::argmax_first finds it, by one warp: each lane keeps
// the first maximum of its elements k = lane, lane + 32, ... (a NaN never replaces: `best < x` is false),
// then the lanes' candidates are combined keeping the larger value, the smaller index on equal values. That
// is the first index holding the maximum of the row's non-NaN values, which is argmax_first's answer
// unless row[0] is NaN (then it keeps 0). This relies on exact float comparisons: built with flush-to-zero
// (nvcc --use_fast_math or -ftz=true), a denormal would compare equal to 0 here and not on the CPU.
__device__ __forceinline__ int64_t warp_argmax_first(const float* __restrict__ row, int64_t K, int lane) {
  float best = -INFINITY;
  int64_t at = K;  // no candidate yet; any non-NaN value, -inf too, takes its place
  for (int64_t k = lane; k < K; k += kWarp) {
    const float v = row[k];
    if (best < v || (v == best && at == K)) {
      best = v;
      at = k;
    }
  }
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const int64_t other_at = __shfl_xor_sync(0xffffffffu, at, offset);
    if (best < other || (other == best && other_at < at)) {
      best = other;
      at = other_at;
    }
  }
  return row[0] != row[0] ? 0 : at;  // a NaN first value is never replaced
}

// One warp per row; the count is a sum of whole numbers in double, exact (deterministic in any order).
// Version 1 had one block of 256 threads, one thread per row scanning it alone: 0.2 % of the copy bandwidth
// at [4096, 1000] on an H200 (2026-12-04).
template <class I>
__global__ void count_top1_correct_kernel(const float* __restrict__ logits, const I* __restrict__ labels,
                                          int64_t N, int64_t K, double* __restrict__ partials,
                                          unsigned* __restrict__ counter, float* __restrict__ count) {
  const int lane = threadIdx.x % kWarp;
  double mine = 0;
  for (int64_t i = global_warp(); i < N; i += grid_warps())
    mine += warp_argmax_first(logits + i * K, K, lane) == static_cast<int64_t>(labels[i]) ? 1.0 : 0.0;
  grid_sum_finish(mine, partials, counter, 1.0, count);
}

}  // namespace

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

template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count,
                        cudaStream_t stream) {
  const unsigned blocks = grid_rows(N);
  GridSumScratch scratch(blocks, stream);
  count_top1_correct_kernel<<<blocks, kThreads, 0, stream>>>(logits, labels, N, K, scratch.partials,
                                                             scratch.counter, count);
  BYOL_CUDA_CHECK_LAUNCH();
}

#define BYOL_INSTANTIATE_CROSS_ENTROPY(I)                                                                \
  template void softmax_cross_entropy_forward<float, I>(const float*, const I*, float*, float*, int64_t, \
                                                        int64_t, cudaStream_t);                          \
  template void softmax_cross_entropy_backward<float, I>(const float*, const I*, const float*, float*,   \
                                                         int64_t, int64_t, cudaStream_t);                \
  template void count_top1_correct<I>(const float*, const I*, int64_t, int64_t, float*, cudaStream_t);
BYOL_INSTANTIATE_CROSS_ENTROPY(int32_t)
BYOL_INSTANTIATE_CROSS_ENTROPY(int64_t)

}  // namespace byol::kernels
