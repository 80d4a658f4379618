// Training metrics that stay on the device, so a step never waits for the GPU to report them.
//
//   count_top1_correct: count[0] = #{ i < N : argmax_first(logits[i, :]) == labels[i] } as a float
//   (exact below 2^24 rows), one block, one thread per row (the probe's K is small), a fixed-order
//   shared-memory sum. The prediction is math::argmax_first, the CPU op's function: ties go to the first
//   maximum, as std::max_element. A label outside [0, K) never matches (nothing is read through it).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

// I = int32_t or int64_t labels.
template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count,
                        cudaStream_t stream);

}  // namespace byol::kernels
