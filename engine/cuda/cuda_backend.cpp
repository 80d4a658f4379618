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

void relu_forward(const float* x, float* y, int64_t n) {
  kernels::relu_forward(x, y, n, compute_stream());
}
void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  kernels::relu_backward(y, dy, dx, n, compute_stream());
}
void add(const float* a, const float* b, float* y, int64_t n) {
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

void add_inplace(float* y, const float* x, int64_t n) {
  kernels::add_inplace(y, x, n, compute_stream());
}

void batch_norm_partial_sums(const float* x, int64_t M, int64_t C, double* stats) {
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
void batch_norm_apply_relu(const float* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, const float* residual, float* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply_relu(x, mean, invstd, gamma, beta, residual, y, M, C, compute_stream());
}
void batch_norm_apply(const float* x, const float* mean, const float* invstd, const float* gamma,
                      const float* beta, float* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply(x, mean, invstd, gamma, beta, y, M, C, compute_stream());
}
void batch_norm_backward_sums(const float* dy, const float* x, const float* mean, const float* invstd,
                              int64_t M, int64_t C, double* sums, float* dbeta, float* dgamma) {
  kernels::batch_norm_backward_sums(dy, x, mean, invstd, M, C, sums, dbeta, dgamma, compute_stream());
}
void batch_norm_backward_dx(const float* dy, const float* x, const float* mean, const float* invstd,
                            const float* gamma, const double* sums, const double* count, float* dx, int64_t M,
                            int64_t C) {
  kernels::batch_norm_backward_dx(dy, x, mean, invstd, gamma, sums, count, dx, M, C, compute_stream());
}
void batch_norm_backward_dx_eval(const float* dy, const float* gamma, const float* invstd, float* dx,
                                 int64_t M, int64_t C) {
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

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_forward(x, y, argmax, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_backward(dy, argmax, dx, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}
void global_avg_pool_forward(const float* x, float* y, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_forward(x, y, N, HW, C, compute_stream());
}
void global_avg_pool_backward(const float* dy, float* dx, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_backward(dy, dx, N, HW, C, compute_stream());
}

// bf16 activations: the same launches on bf16 rows (the kernels are templates on the storage type).
void relu_forward(const bf16* x, bf16* y, int64_t n) {
  kernels::relu_forward(x, y, n, compute_stream());
}

void relu_backward(const bf16* y, const bf16* dy, bf16* dx, int64_t n) {
  kernels::relu_backward(y, dy, dx, n, compute_stream());
}

void add(const bf16* a, const bf16* b, bf16* y, int64_t n) {
  kernels::add(a, b, y, n, compute_stream());
}

void add_inplace(bf16* y, const bf16* x, int64_t n) {
  kernels::add_inplace(y, x, n, compute_stream());
}

void batch_norm_partial_sums(const bf16* x, int64_t M, int64_t C, double* stats) {
  kernels::batch_norm_partial_sums(x, M, C, stats, compute_stream());
}

void batch_norm_apply_relu(const bf16* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, const bf16* residual, bf16* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply_relu(x, mean, invstd, gamma, beta, residual, y, M, C, compute_stream());
}

void batch_norm_apply(const bf16* x, const float* mean, const float* invstd, const float* gamma,
                      const float* beta, bf16* y, int64_t M, int64_t C) {
  kernels::batch_norm_apply(x, mean, invstd, gamma, beta, y, M, C, compute_stream());
}

void batch_norm_backward_sums(const bf16* dy, const bf16* x, const float* mean, const float* invstd,
                              int64_t M, int64_t C, double* sums, float* dbeta, float* dgamma) {
  kernels::batch_norm_backward_sums(dy, x, mean, invstd, M, C, sums, dbeta, dgamma, compute_stream());
}

void batch_norm_backward_dx(const bf16* dy, const bf16* x, const float* mean, const float* invstd,
                            const float* gamma, const double* sums, const double* count, bf16* dx, int64_t M,
                            int64_t C) {
  kernels::batch_norm_backward_dx(dy, x, mean, invstd, gamma, sums, count, dx, M, C, compute_stream());
}

void batch_norm_backward_dx_eval(const bf16* dy, const float* gamma, const float* invstd, bf16* dx, int64_t M,
                                 int64_t C) {
  kernels::batch_norm_backward_dx_eval(dy, gamma, invstd, dx, M, C, compute_stream());
}

void max_pool2d_forward(const bf16* x, bf16* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_forward(x, y, argmax, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}

void max_pool2d_backward(const bf16* dy, const int32_t* argmax, bf16* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q, int kernel, int stride, int pad) {
  kernels::max_pool2d_backward(dy, argmax, dx, N, H, W, C, P, Q, kernel, stride, pad, compute_stream());
}

void global_avg_pool_forward(const bf16* x, bf16* y, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_forward(x, y, N, HW, C, compute_stream());
}

void global_avg_pool_backward(const bf16* dy, bf16* dx, int64_t N, int64_t HW, int64_t C) {
  kernels::global_avg_pool_backward(dy, dx, N, HW, C, compute_stream());
}

}  // namespace byol::cuda
