// The raw CUDA functions of engine/cuda/cuda_backend.h: the handwritten kernels (kernels/) on the compute
// stream.
#include "engine/cuda/cuda_backend.h"

#include "engine/cuda/batch_norm.cuh"
#include "engine/cuda/blas.h"
#include "engine/cuda/byol_loss.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cross_entropy.cuh"
#include "engine/cuda/elementwise.cuh"
#include "engine/cuda/pool.cuh"

namespace byol::cuda {

template <class S>
void relu_forward(const S* x, S* y, int64_t n) {
  kernels::relu_forward(x, y, n, compute_stream());
}
template <class S>
void relu_backward(const S* y, const S* dy, S* dx, int64_t n) {
  kernels::relu_backward(y, dy, dx, n, compute_stream());
}
template <class S>
void add(const S* a, const S* b, S* y, int64_t n) {
  kernels::add(a, b, y, n, compute_stream());
}
void scale(const float* x, double alpha, float* y, int64_t n) {
  kernels::scale(x, alpha, y, n, compute_stream());
}
void sum(const float* x, int64_t n, double factor, float* out) {
  kernels::sum(x, n, factor, out, compute_stream());
}
void fill_from_scalar(float* y, const float* scalar, double factor, int64_t n) {
  kernels::fill_from_scalar(y, scalar, factor, n, compute_stream());
}

template <class S>
void add_inplace(S* y, const S* x, int64_t n) {
  kernels::add_inplace(y, x, n, compute_stream());
}

template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats) {
  kernels::batch_norm_partial_sums(x, M, C, stats, compute_stream());
}
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, float* mean, float* invstd,
                      float* running_mean, float* running_var) {
  kernels::batch_norm_stats(stats, C, eps, decay, mean, invstd, running_mean, running_var, compute_stream());
}
void batch_norm_eval_stats(const float* running_mean, const float* running_var, int64_t C, double eps,
                           float* mean, float* invstd) {
  kernels::batch_norm_eval_stats(running_mean, running_var, C, eps, mean, invstd, compute_stream());
}
template <class S>
void batch_norm_apply_relu(const S* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, const S* residual, S* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply_relu(x, mean, invstd, gamma, beta, residual, y, M, C, compute_stream());
}
template <class S>
void batch_norm_apply(const S* x, const float* mean, const float* invstd, const float* gamma,
                      const float* beta, S* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply(x, mean, invstd, gamma, beta, y, M, C, compute_stream());
}
template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const float* mean, const float* invstd, int64_t M,
                              int64_t C, double* sums, float* dbeta, float* dgamma) {
  kernels::batch_norm_backward_sums(dy, x, mean, invstd, M, C, sums, dbeta, dgamma, compute_stream());
}
template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const float* mean, const float* invstd,
                            const float* gamma, const double* sums, const double* count, S* dx, int64_t M,
                            int64_t C) {
  kernels::batch_norm_backward_dx(dy, x, mean, invstd, gamma, sums, count, dx, M, C, compute_stream());
}
template <class S>
void batch_norm_backward_dx_eval(const S* dy, const float* gamma, const float* invstd, S* dx, int64_t M,
                                 int64_t C) {
  kernels::batch_norm_backward_dx_eval(dy, gamma, invstd, dx, M, C, compute_stream());
}

void l2_normalize_forward(const float* x, float* y, float* inv_norm, int64_t N, int64_t D) {
  kernels::l2_normalize_forward(x, y, inv_norm, N, D, compute_stream());
}
void l2_normalize_backward(const float* dy, const float* x, const float* y, const float* inv_norm, float* dx,
                           int64_t N, int64_t D) {
  kernels::l2_normalize_backward(dy, x, y, inv_norm, dx, N, D, compute_stream());
}
void byol_loss_forward(const float* p1, const float* z2, const float* p2, const float* z1, int64_t N,
                       int64_t D, float* loss) {
  kernels::byol_loss_forward(p1, z2, p2, z1, N, D, loss, compute_stream());
}
void byol_loss_backward(const float* p1, const float* z2, const float* p2, const float* z1, const float* g,
                        float* dp1, float* dz2, float* dp2, float* dz1, int64_t N, int64_t D) {
  kernels::byol_loss_backward(p1, z2, p2, z1, g, dp1, dz2, dp2, dz1, N, D, compute_stream());
}

void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                     int64_t N, int64_t in, int64_t out) {
  if (dx) gemm(dy, w, dx, N, out, in, false, false);  // dx[N, in] = dy[N, out] w[out, in]
  if (dw) gemm(dy, x, dw, out, N, in, true, false);   // dw[out, in] = dy[N, out]^T x[N, in]
  if (db) kernels::column_sums(dy, N, out, db, compute_stream());
}

template <class I>
void softmax_cross_entropy_forward(const float* logits, const I* labels, float* probs, float* loss, int64_t N,
                                   int64_t K) {
  kernels::softmax_cross_entropy_forward(logits, labels, probs, loss, N, K, compute_stream());
}
template <class I>
void softmax_cross_entropy_backward(const float* probs, const I* labels, const float* g, float* dlogits,
                                    int64_t N, int64_t K) {
  kernels::softmax_cross_entropy_backward(probs, labels, g, dlogits, N, K, compute_stream());
}
template void softmax_cross_entropy_forward<int32_t>(const float*, const int32_t*, float*, float*, int64_t,
                                                     int64_t);
template void softmax_cross_entropy_forward<int64_t>(const float*, const int64_t*, float*, float*, int64_t,
                                                     int64_t);
template void softmax_cross_entropy_backward<int32_t>(const float*, const int32_t*, const float*, float*,
                                                      int64_t, int64_t);
template void softmax_cross_entropy_backward<int64_t>(const float*, const int64_t*, const float*, float*,
                                                      int64_t, int64_t);

template <class I>
void count_top1_correct(const float* logits, const I* labels, int64_t N, int64_t K, float* count) {
  kernels::count_top1_correct(logits, labels, N, K, count, compute_stream());
}
template void count_top1_correct<int32_t>(const float*, const int32_t*, int64_t, int64_t, float*);
template void count_top1_correct<int64_t>(const float*, const int64_t*, int64_t, int64_t, float*);

void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n) {
  kernels::cast(src, src_dtype, dst, dst_dtype, n, compute_stream());
}

template <class S>
void max_pool2d_forward(const S* x, S* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_forward(x, y, argmax, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}
template <class S>
void max_pool2d_backward(const S* dy, const int32_t* argmax, S* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_backward(dy, argmax, dx, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}
template <class S>
void global_avg_pool_forward(const S* x, S* y, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_forward(x, y, N, HW, C, compute_stream());
}
template <class S>
void global_avg_pool_backward(const S* dy, S* dx, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_backward(dy, dx, N, HW, C, compute_stream());
}

// Activations stored as float or bf16 (the kernels are templates on the storage type).
#define BYOL_INSTANTIATE_ACTIVATION_OPS(S)                                                                  \
  template void relu_forward<S>(const S*, S*, int64_t);                                                     \
  template void relu_backward<S>(const S*, const S*, S*, int64_t);                                          \
  template void add<S>(const S*, const S*, S*, int64_t);                                                    \
  template void add_inplace<S>(S*, const S*, int64_t);                                                      \
  template void batch_norm_partial_sums<S>(const S*, int64_t, int64_t, double*);                            \
  template void batch_norm_apply_relu<S>(const S*, const float*, const float*, const float*, const float*,  \
                                         const S*, S*, int64_t, int64_t);                                   \
  template void batch_norm_apply<S>(const S*, const float*, const float*, const float*, const float*, S*,   \
                                    int64_t, int64_t);                                                      \
  template void batch_norm_backward_sums<S>(const S*, const S*, const float*, const float*, int64_t,        \
                                            int64_t, double*, float*, float*);                              \
  template void batch_norm_backward_dx<S>(const S*, const S*, const float*, const float*, const float*,     \
                                          const double*, const double*, S*, int64_t, int64_t);              \
  template void batch_norm_backward_dx_eval<S>(const S*, const float*, const float*, S*, int64_t, int64_t); \
  template void max_pool2d_forward<S>(const S*, S*, int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                                      int64_t, int, int, int);                                              \
  template void max_pool2d_backward<S>(const S*, const int32_t*, S*, int64_t, int64_t, int64_t, int64_t,    \
                                       int64_t, int64_t, int, int, int);                                    \
  template void global_avg_pool_forward<S>(const S*, S*, int64_t, int64_t, int64_t);                        \
  template void global_avg_pool_backward<S>(const S*, S*, int64_t, int64_t, int64_t);
BYOL_INSTANTIATE_ACTIVATION_OPS(float)
BYOL_INSTANTIATE_ACTIVATION_OPS(bf16)

}  // namespace byol::cuda
