// A deterministic sum over a whole grid, finished on the device: each block writes its partial, the last
// block to arrive adds the partials in block order (no floating-point atomics), so a loss is the same
// bits on every run. Used by the row kernels of byol_loss.cu and cross_entropy.cu.
#pragma once

#include <cuda_runtime.h>

#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"

namespace byol::kernels {

// Adds `value` (held by lane 0 of each warp) over the whole grid and stores scale * total in out[0].
// The last block to arrive adds the per-block partials in block order, so the result is deterministic.
template <class T>
__device__ __forceinline__ void grid_sum_finish(double value, double* __restrict__ block_partials,
                                                unsigned* __restrict__ counter, double scale,
                                                T* __restrict__ out) {
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

}  // namespace byol::kernels
