// The CUDA backend's raw functions for the op front ends (engine/ops/*.cpp), with the signatures of the CPU
// backend's (engine/cpu/cpu_backend.h) for float: device pointers and sizes, launched on the compute stream
// (cuda::compute_stream()), nothing waits for the GPU, scalars (losses, their gradients) stay in device
// memory. A front end records each op's backward once and calls cpu::X or cuda::X by the tensors' device.
// Plain C++ (no CUDA header), so the front ends include it in every build; calls go through BYOL_ON_CUDA
// (engine/ops/check.h), and the definitions (engine/cuda/cuda_backend.cpp) exist in CUDA builds only.
#pragma once

#include <cstdint>

#include "engine/dtype.h"

namespace byol::cuda {

// The ops on activations (relu, add, batch norm's passes over the rows, pooling) are templates on the
// activations' storage type S, instantiated for float and bf16 (train.precision = "bf16" on a GPU: float
// math, float32 parameters, statistics and parameter gradients, one rounding per stored value, as the CPU
// backend).

template <class S>
void relu_forward(const S* x, S* y, int64_t n);
template <class S>
void relu_backward(const S* y, const S* dy, S* dx, int64_t n);
template <class S>
void add(const S* a, const S* b, S* y, int64_t n);
void scale(const float* x, double alpha, float* y, int64_t n);
void sum(const float* x, int64_t n, double factor, float* out);
void fill_from_scalar(float* y, const float* scalar, double factor, int64_t n);

template <class S>
void add_inplace(S* y, const S* x, int64_t n);

template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats);
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, float* mean, float* invstd,
                      float* running_mean, float* running_var);
void batch_norm_eval_stats(const float* running_mean, const float* running_var, int64_t C, double eps,
                           float* mean, float* invstd);
template <class S>
void batch_norm_apply_relu(const S* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, const S* residual, S* y, int64_t M, int64_t C);
template <class S>
void batch_norm_apply(const S* x, const float* mean, const float* invstd, const float* gamma,
                      const float* beta, S* y, int64_t M, int64_t C);
template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const float* mean, const float* invstd, int64_t M,
                              int64_t C, double* sums, float* dbeta, float* dgamma);
template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const float* mean, const float* invstd,
                            const float* gamma, const double* sums, const double* count, S* dx, int64_t M,
                            int64_t C);
template <class S>
void batch_norm_backward_dx_eval(const S* dy, const float* gamma, const float* invstd, S* dx, int64_t M,
                                 int64_t C);

void l2_normalize_forward(const float* x, float* y, float* inv_norm, int64_t N, int64_t D);
void l2_normalize_backward(const float* dy, const float* x, const float* y, const float* inv_norm, float* dx,
                           int64_t N, int64_t D);
void byol_loss_forward(const float* p1, const float* z2, const float* p2, const float* z1, int64_t N,
                       int64_t D, float* loss);
void byol_loss_backward(const float* p1, const float* z2, const float* p2, const float* z1, const float* g,
                        float* dp1, float* dz2, float* dp2, float* dz1, int64_t N, int64_t D);

// dy [N, out] -> dx = dy w, dw = dy^T x, db = column sums of dy; a null output is skipped (and its input
// may be null). The CPU backend's linear_backward arguments.
void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                     int64_t N, int64_t in, int64_t out);

// I = int32_t or int64_t (instantiated for both). The labels are not read back (no host synchronisation):
// a label outside [0, K) makes the loss NaN on the device.
template <class I>
void softmax_cross_entropy_forward(const float* logits, const I* labels, float* probs, float* loss, int64_t N,
                                   int64_t K);
template <class I>
void softmax_cross_entropy_backward(const float* probs, const I* labels, const float* g, float* dlogits,
                                    int64_t N, int64_t K);

template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count);

// Tensor::to(DType) on a GPU: dtypes as int (DType), f32, f64 and bf16.
void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n);

template <class S>
void max_pool2d_forward(const S* x, S* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad);
template <class S>
void max_pool2d_backward(const S* dy, const int32_t* argmax, S* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad);
template <class S>
void global_avg_pool_forward(const S* x, S* y, int64_t N, int64_t HW, int64_t C);
template <class S>
void global_avg_pool_backward(const S* dy, S* dx, int64_t N, int64_t HW, int64_t C);

}  // namespace byol::cuda
