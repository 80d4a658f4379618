// Softmax cross-entropy and its top-1 metric on the GPU (launchers). Row formulas:
// engine/math/cross_entropy.h (shared with the CPU, engine/cpu/cross_entropy.cpp).
//
// Scalars stay on the device: the forward writes the mean loss to a one-element device buffer, the
// backward reads the incoming gradient g from one, and count_top1_correct writes its count to one, so
// the BYOL step's linear probe never waits for the host. The mean is deterministic
// (engine/cuda/grid_sum.cuh). Launchers that need scratch memory take it from cuda::DeviceBuffer, which
// is ordered on cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

// loss[0] = mean_i (log Z_i - logits[i, labels[i]]), probs = softmax(logits); one warp per row.
// I = int32_t or int64_t labels in [0, K); a row with a label outside makes the loss (and that row's
// gradient) NaN instead of reading outside the row (the labels are not read back to validate them).
template <class T, class I>
void softmax_cross_entropy_forward(const T* logits, const I* labels, T* probs, T* loss, int64_t N, int64_t K,
                                   cudaStream_t stream);
// dlogits = (probs - onehot(labels)) * g[0] / N; one thread per element.
template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K, cudaStream_t stream);

// count[0] = #{ i < N : argmax_first(logits[i, :]) == labels[i] } as a float (exact below 2^24 rows), one
// warp per row, the count by the deterministic grid sum. The prediction is math::argmax_first's answer,
// the CPU op's function: ties go to the first maximum, as std::max_element, a NaN never wins, and a NaN
// first value is kept. A label outside [0, K) never matches (nothing is read through it). K > 0 (the front
// end checks it); N = 0 counts 0.
template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count,
                        cudaStream_t stream);

}  // namespace byol::kernels
