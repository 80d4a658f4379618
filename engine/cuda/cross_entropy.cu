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

template <class I>
__global__ void count_top1_correct_kernel(const float* __restrict__ logits, const I* __restrict__ labels,
                                          int64_t N, int64_t K, float* __restrict__ count) {
  __shared__ int64_t partial[kThreads];
  int64_t mine = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
    mine += math::argmax_first(logits + i * K, K) == static_cast<int64_t>(labels[i]);
  partial[threadIdx.x] = mine;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) count[0] = static_cast<float>(partial[0]);
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
  count_top1_correct_kernel<<<1, kThreads, 0, stream>>>(logits, labels, N, K, count);
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
