// CPU backend: Eigen GEMMs plus OpenMP loops over raw, contiguous buffers. The front end
// (engine/ops/*.cpp) has already checked shapes, dtypes and devices; these functions trust their
// arguments. Each is instantiated for float (training) and double (gradient checks).
//
// Writes vs accumulates: every output here is written (=), except conv2d_backward_filter, which
// writes dw as well (its batch chunks are summed internally).
#pragma once

#include <cstdint>
#include <string>

#include "engine/dtype.h"

namespace byol::cpu {

// Geometry of an NHWC convolution with KRSC filters.
struct ConvGeom {
  int64_t N, H, W, C;  // input
  int64_t K, R, S;     // filters
  int64_t P, Q;        // output spatial size
  int64_t stride, pad;
  // bf16 products (float32 only): the operands of the products (x and w forward, dy and w backward data,
  // and where bf16_backward_filter(*this) x and dy backward filter) rounded to bf16 (nearest even), the
  // products summed in float32; inputs, outputs and gradients stay float32. oneDNN's bf16 kernels (AMX or
  // AVX512-BF16 where the CPU has them) run it; without one, im2col on rounded copies gives the same
  // products.
  bool bf16 = false;
  bool is_pointwise() const { return R == 1 && S == 1 && stride == 1 && pad == 0; }
};

// Whether a bf16 convolution's backward-filter pass rounds its operands too: outputs of at most 8x8, and 3x3
// convolutions with at least 16 input channels. Elsewhere (the stem, 1x1 downsamples to 16x16 and more)
// oneDNN 2.6's bf16 weight-gradient kernels measured slower than its float32 ones on AMX, so that pass stays
// float32 (docs/benchmarks.md, "bf16 products" and "bf16 convolutions as matmuls"). A rule of the
// geometry, not a timing: the same on every run and with every algorithm.
inline bool bf16_backward_filter(const ConvGeom& g) {
  return g.bf16 && (g.P * g.Q <= 64 || (g.R == 3 && g.S == 3 && g.C >= 16));
}

enum class ConvPass { forward, backward_data, backward_filter };

// Whether a bf16 convolution pass runs as im2col + oneDNN's bf16 matmul (engine/cpu/conv_matmul_bf16.cpp)
// instead of oneDNN's bf16 convolution kernels: where it measured faster (docs/benchmarks.md, "bf16
// convolutions as matmuls"). Only the speed depends on it; the products are the same.
bool bf16_matmul_pass(const ConvGeom& g, ConvPass pass);
// Whether bf16 measured faster than float32 on this CPU: where oneDNN runs it on AMX tiles
// (docs/benchmarks.md: the ResNet-18 CIFAR step 1.8-1.9x with bf16 products and 2.0-2.1x with bf16
// activations; the small Fashion-MNIST network 1.06-1.13x with bf16 products and about 1.0x with bf16
// activations, whose float32 heads cost it there, which is why the CPU's bf16 keeps float32 activations
// unless train.cpu_bf16_activations).
// train.precision = "auto" picks bf16 where this holds. Elsewhere (AVX512-BF16 without AMX, or no bf16
// units, or no oneDNN) unmeasured or slower: false.
bool bf16_measured_faster();
// Whether oneDNN has bf16 convolution and matmul kernels on this CPU (oneDNN 2.6: AVX-512 and later; a CPU
// with AVX2 only has none, not even reference ones). Where it has none, every pass with bf16 products or
// bf16 activations runs as the float32 convolution (oneDNN's float32 kernels, or im2col) on copies rounded to
// bf16: the same products, summed in float32 in another order, and slower (so "auto" never picks bf16
// there: bf16_measured_faster is false).
bool bf16_kernels_available();
// For benchmarks and tests: false keeps every bf16 pass on oneDNN's convolution kernels (default true).
void set_bf16_matmul_enabled(bool enabled);
// The matmul path's passes (oneDNN builds only: conv_onednn.cpp calls them), on float32 activations or on
// bf16 ones (A = float or bf16), which are read as they are, the outputs' float32 sums rounded once
// (forward, backward data), as the widening path would.
template <class A>
void matmul_bf16_conv2d_forward(const A* x, const float* w, A* y, const ConvGeom& g);
template <class A>
void matmul_bf16_conv2d_backward_data(const A* dy, const float* w, A* dx, const ConvGeom& g);
template <class A>
void matmul_bf16_conv2d_backward_filter(const A* dy, const A* x, float* dw, const ConvGeom& g);
std::string matmul_bf16_conv2d_implementation(const ConvGeom& g, ConvPass pass);

// How float32 convolutions run (engine/cpu/conv_onednn.cpp): oneDNN's direct kernels with Winograd
// F(4x4, 3x3) for 3x3 stride-1 convolutions (the default when the build found oneDNN, on CPUs with
// AVX-512), oneDNN's direct kernels only (the default without AVX-512), or im2col + GEMM
// (engine/cpu/conv.cpp; the reference the oneDNN paths are tested against, and float64's path). Under
// either oneDNN choice a geometry with one output position per image (P = Q = 1) runs as one GEMM over the
// taps that read the input, in float32 and float64 (engine/cpu/conv.cpp, single_position).
// BYOL_CPU_CONV=winograd|direct|im2col sets the initial choice.
enum class ConvAlgorithm { im2col, onednn_direct, onednn_winograd };
bool onednn_available();
void set_conv_algorithm(ConvAlgorithm a);  // throws if oneDNN is asked for and not built in
ConvAlgorithm conv_algorithm();
// The oneDNN halves: false when oneDNN has only its reference implementation for this geometry (the
// caller then falls back to im2col). Forward and backward data write; backward filter writes dw. The
// activations A are float32, or bf16 (ConvGeom::bf16 set), which oneDNN reads and writes as bf16, with its
// convolution kernels or, where bf16_matmul_pass says, the matmul path.
template <class A>
bool onednn_conv2d_forward(const A* x, const float* w, A* y, const ConvGeom& g);
template <class A>
bool onednn_conv2d_backward_data(const A* dy, const float* w, A* dx, const ConvGeom& g);
template <class A>
bool onednn_conv2d_backward_filter(const A* dy, const A* x, float* dw, const ConvGeom& g);
// "forward / backward data / backward weights" implementation names oneDNN picked, for benchmarks.
std::string onednn_conv2d_implementation(const ConvGeom& g);

template <class T>
void conv2d_forward(const T* x, const T* w, T* y, const ConvGeom& g);
template <class T>
void conv2d_backward_data(const T* dy, const T* w, T* dx, const ConvGeom& g);
template <class T>
void conv2d_backward_filter(const T* dy, const T* x, T* dw, const ConvGeom& g);

// bf16 activations (x, y, dy, dx stored as bf16; train.precision = "bf16" with bf16 activations): float32
// weights and weight gradient, the products in bf16 (ConvGeom::bf16 is implied), float32 sums, each output
// rounded once to bf16.
void conv2d_forward_bf16(const bf16* x, const float* w, bf16* y, const ConvGeom& g);
void conv2d_backward_data_bf16(const bf16* dy, const float* w, bf16* dx, const ConvGeom& g);
void conv2d_backward_filter_bf16(const bf16* dy, const bf16* x, float* dw, const ConvGeom& g);

// Pooling over NHWC. argmax holds, per output element, the input offset within its image (h*W+w)*C+c.
template <class T>
void max_pool2d_forward(const T* x, T* y, int32_t* argmax, int64_t N, int64_t H, int64_t W, int64_t C,
                        int64_t P, int64_t Q, int kernel, int stride, int pad);
template <class T>
void max_pool2d_backward(const T* dy, const int32_t* argmax, T* dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t P, int64_t Q);
template <class T>
void global_avg_pool_forward(const T* x, T* y, int64_t N, int64_t HW, int64_t C);
template <class T>
void global_avg_pool_backward(const T* dy, T* dx, int64_t N, int64_t HW, int64_t C);

// Batch norm over [M, C], with the CUDA backend's arguments (engine/cuda/cuda_backend.h). Partial sums are
// double: stats = [count, sum[C], sum_sq[C]] (2C + 1 values). batch_norm_stats: mean and invstd from the
// (reduced) stats, and the running-statistics update when running_mean / running_var are not null.
// The passes over the rows take the activations' storage type S (float, double, or bf16 with float math:
// compute_t<S>); the statistics and parameters are compute_t<S>.
template <class S>
void batch_norm_partial_sums(const S* x, int64_t M, int64_t C, double* stats);
template <class T>
void batch_norm_stats(const double* stats, int64_t C, double eps, double decay, T* mean, T* invstd,
                      T* running_mean, T* running_var);
template <class T>
void batch_norm_eval_stats(const T* running_mean, const T* running_var, int64_t C, double eps, T* mean,
                           T* invstd);
template <class S>
void batch_norm_apply(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                      const compute_t<S>* gamma, const compute_t<S>* beta, S* y, int64_t M, int64_t C);
// y = relu(normalised x + residual) in one pass; residual [M, C] or null (none).
template <class S>
void batch_norm_apply_relu(const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                           const compute_t<S>* gamma, const compute_t<S>* beta, const S* residual, S* y,
                           int64_t M, int64_t C);
// sums = [sum(dy)[C], sum(dy * x_hat)[C]] of these M rows; dbeta = sum(dy), dgamma = sum(dy * x_hat).
template <class S>
void batch_norm_backward_sums(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                              int64_t M, int64_t C, double* sums, compute_t<S>* dbeta, compute_t<S>* dgamma);
// dx for training mode; *count is the (possibly all-reduced) number of values per channel: stats[0].
template <class S>
void batch_norm_backward_dx(const S* dy, const S* x, const compute_t<S>* mean, const compute_t<S>* invstd,
                            const compute_t<S>* gamma, const double* sums, const double* count, S* dx,
                            int64_t M, int64_t C);

// dx for evaluation mode (fixed statistics): dy * gamma * invstd.
template <class S>
void batch_norm_backward_dx_eval(const S* dy, const compute_t<S>* gamma, const compute_t<S>* invstd, S* dx,
                                 int64_t M, int64_t C);

// Dense: y[N, out] = x[N, in] w[out, in]^T (+ b).
template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, int64_t N, int64_t in, int64_t out);
template <class T>
void linear_backward(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int64_t N, int64_t in,
                     int64_t out);  // any of dx, dw, db may be null
// With bf16 products (train.precision = "bf16"; float32 in and out): the linear map as the 1x1 convolution
// of N one-pixel images, so it takes the convolutions' bf16 path (ConvGeom::bf16: oneDNN's bf16 matmul, or
// im2col on rounded operands); the bias and its gradient stay float32.
void linear_forward_bf16(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                         int64_t out);
void linear_backward_bf16(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                          int64_t N, int64_t in, int64_t out);  // any of dx, dw, db may be null
template <class T>
void matmul(const T* a, const T* b, T* c, int64_t M, int64_t K, int64_t N, bool trans_a, bool trans_b);

// Rows: y = x * rsqrt(max(|x|^2, 1e-12)); backward needs y and the saved inverse norms.
template <class T>
void l2_normalize_forward(const T* x, T* y, T* inv_norm, int64_t N, int64_t D);
template <class T>
void l2_normalize_backward(const T* dy, const T* x, const T* y, const T* inv_norm, T* dx, int64_t N,
                           int64_t D);

// BYOL loss: *loss = mean_i [(2 - 2cos(p1_i, z2_i)) + (2 - 2cos(p2_i, z1_i))] (summed in double).
// Backward writes the gradients (scaled by *g) of the non-null outputs. The CUDA backend's signatures.
template <class T>
void byol_loss_forward(const T* p1, const T* z2, const T* p2, const T* z1, int64_t N, int64_t D, T* loss);
template <class T>
void byol_loss_backward(const T* p1, const T* z2, const T* p2, const T* z1, const T* g, T* dp1, T* dz2,
                        T* dp2, T* dz1, int64_t N, int64_t D);

// Softmax cross-entropy with integer labels (I = int32_t or int64_t): *loss = the mean loss (summed in
// double), probs kept for backward; backward scales by *g. The CUDA backend's signatures.
template <class T, class I>
void softmax_cross_entropy_forward(const T* logits, const I* labels, T* probs, T* loss, int64_t N, int64_t K);
template <class T, class I>
void softmax_cross_entropy_backward(const T* probs, const I* labels, const T* g, T* dlogits, int64_t N,
                                    int64_t K);

// *count = the number of rows whose first maximum is at the label (I = int32_t or int64_t; a label outside
// [0, K) never matches).
template <class T, class I>
void count_top1_correct(const T* logits, const I* labels, int64_t N, int64_t K, T* count);

// Elementwise and reductions over n values.
template <class T>
void relu_forward(const T* x, T* y, int64_t n);
template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n);
template <class T>
void add(const T* a, const T* b, T* y, int64_t n);
template <class T>
void add_inplace(T* y, const T* x, int64_t n);
template <class T>
void scale(const T* x, double alpha, T* y, int64_t n);
// *out = factor * sum(x) (the sum in double); y[i] = factor * *scalar. The same signatures as the CUDA
// backend's (engine/cuda/cuda_backend.h), whose scalars stay in device memory.
template <class T>
void sum(const T* x, int64_t n, double factor, T* out);
template <class T>
void fill_from_scalar(T* y, const T* scalar, double factor, int64_t n);

}  // namespace byol::cpu
