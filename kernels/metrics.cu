#include <cstdint>

#include "engine/cuda/cuda_check.h"
#include "kernels/common.cuh"
#include "kernels/math/elementwise_math.h"
#include "kernels/metrics.cuh"

namespace byol::kernels {
namespace {

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

template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count,
                        cudaStream_t stream) {
  count_top1_correct_kernel<<<1, kThreads, 0, stream>>>(logits, labels, N, K, count);
  BYOL_CUDA_CHECK_LAUNCH();
}

template void count_top1_correct<int32_t>(const float*, const int32_t*, int64_t, int64_t, float*,
                                          cudaStream_t);
template void count_top1_correct<int64_t>(const float*, const int64_t*, int64_t, int64_t, float*,
                                          cudaStream_t);

}  // namespace byol::kernels
