// A deterministic sum over a whole grid, finished on the device: each block writes its partial, the last
// block to arrive adds the partials in a fixed order (no floating-point atomics), so a loss is the same
// bits on every run. Used by the row kernels of byol_loss.cu and cross_entropy.cu.
#pragma once

#include <cuda_runtime.h>

#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"

namespace byol::kernels {

// Adds `value` (held by lane 0 of each warp) over the whole grid and stores scale * total in out[0].
// The last block to arrive adds the per-block partials: thread t the partials t, t + blockDim.x, ... in
// order, then a fixed tree (a warp butterfly, then the warps' sums in order), so the result depends only on
// the grid's shape and is the same bits on every run. Version 1 had one thread add every partial in turn,
// each load waiting for the last: at 512 blocks (byol_loss_lab's N = 4096 rows) the forward took 26 us
// against 4 us of reading its inputs (H200, 2026-12-04).
template <class T>
__device__ __forceinline__ void grid_sum_finish(double value, double* __restrict__ block_partials,
                                                unsigned* __restrict__ counter, double scale,
                                                T* __restrict__ out) {
  __shared__ double warp_sums[kThreads / kWarp];
  __shared__ bool is_last;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < warps; ++w) s += warp_sums[w];
    block_partials[blockIdx.x] = s;
    __threadfence();  // publish the partial before taking a ticket
    const unsigned ticket = atomicAdd(counter, 1u);
    is_last = ticket == gridDim.x - 1;
  }
  __syncthreads();       // also: thread 0 has read warp_sums, which the last block reuses below
  if (!is_last) return;  // the same for the whole block
  __threadfence();
  const volatile double* partials = block_partials;
  double s = 0;
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) s += partials[b];
  s = warp_sum(s);
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int w = 0; w < warps; ++w) total += warp_sums[w];
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
