// The op front end: every op checks its arguments (shape, dtype, device, contiguity) and throws a
// byol::Error naming the op, the argument and what was expected; then it dispatches to the backend of
// the inputs' device and, when a gradient is needed, records its backward on the autograd tape.
//
// Layouts: activations NHWC, conv filters KRSC, linear weights [out, in] (PyTorch's convention), MLP
// activations [N, C]. Floating ops accept f32 and f64 (f64 is what the gradient checks run in).
#pragma once

#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"

namespace byol::ops {

// --- convolution and pooling -------------------------------------------------------------------------
struct Conv2dParams {
  int stride = 1;
  int padding = 0;  // zero padding on every side
  // Mixed precision (float32 inputs, CPU): the products' operands rounded to bf16, sums in float32,
  // float32 outputs and gradients (cpu::ConvGeom::bf16).
  bool bf16 = false;
};
// x [N, H, W, C], w [K, R, S, C] -> [N, P, Q, K] with P = (H + 2 pad - R) / stride + 1. No bias
// (ResNet convolutions are followed by batch norm).
Tensor conv2d(const Tensor& x, const Tensor& w, Conv2dParams p = {});

// x [N, H, W, C] -> [N, P, Q, C]; padded positions never win. ResNet's stem uses kernel 3, stride 2, pad 1.
Tensor max_pool2d(const Tensor& x, int kernel = 3, int stride = 2, int padding = 1);

// x [N, H, W, C] -> [N, C], the mean over H and W.
Tensor global_avg_pool(const Tensor& x);

// --- normalisation -------------------------------------------------------------------------------------
// All-reduces per-channel partial sums in place (a communicator fills it for synced batch norm). The
// tensor is f64 on the input's device; forward passes [count, sum[C], sum_sq[C]] per group, backward
// passes [sum(dy)[C], sum(dy * x_hat)[C]] per group (groups one after another).
using StatsAllReduce = std::function<void(Tensor& partial_sums)>;

struct BatchNormOptions {
  bool training = true;
  double decay = 0.9;  // running = decay * running + (1 - decay) * batch statistic
  double eps = 1e-5;
  StatsAllReduce all_reduce;  // empty: statistics of this process's batch only
  // The batch dimension splits into `groups` equal consecutive parts, each normalised with its own
  // statistics (running statistics updated once per group, in order) — exactly `groups` separate calls,
  // with one all-reduce of [groups, ...] sums instead of `groups` of them. BYOL runs its two views this way.
  int64_t groups = 1;
};

// x [..., C] (NHWC or [N, C]); gamma, beta, running_mean, running_var [C], same dtype as x.
// Training: normalises with the batch mean and biased variance (what the official BYOL code's Haiku
// BatchNorm does) and, when running_mean/var are defined, updates them in place (no gradient).
// Evaluation: normalises with the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, const BatchNormOptions& opt = {});

// relu(batch_norm(x) + residual), residual optional (same shape, dtype and device as x), fused: the
// epilogue runs in batch norm's normalising pass, and the result is the same to the bit as the three ops
// (ResNet's "BN, ReLU" and "BN, add the shortcut, ReLU"). Same options and statistics as batch_norm.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, const BatchNormOptions& opt = {},
                       const Tensor& residual = Tensor());

// x [N, D] -> each row times rsqrt(max(sum x^2, 1e-12)).
Tensor l2_normalize(const Tensor& x);

// --- dense -------------------------------------------------------------------------------------------
// x [N, in], w [out, in], optional b [out] -> [N, out].
struct LinearParams {
  // Mixed precision (float32 inputs, CPU), as Conv2dParams::bf16: the products' operands rounded to bf16,
  // sums, outputs, the bias and every gradient float32.
  bool bf16 = false;
};
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), LinearParams p = {});
// a [M, K], b [K, N] -> [M, N].
Tensor matmul(const Tensor& a, const Tensor& b);

// --- elementwise and reductions --------------------------------------------------------------------------
Tensor relu(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shape, dtype and device
// x in another floating dtype (f32, f64, bf16; to bf16 rounds to nearest even), differentiable: the gradient
// is cast back. The same tensor when the dtype is already x's. How activations become bf16 and the
// network's features float32 again (train.precision = "bf16").
Tensor cast(const Tensor& x, DType dtype);
Tensor scale(const Tensor& x, double alpha);
Tensor sum(const Tensor& x);  // all elements -> one-element tensor of shape []
Tensor mean(const Tensor& x);

// --- losses ------------------------------------------------------------------------------------------
// BYOL's regression loss with both symmetric terms (paper eq. 2 and the sum L + L~):
//   mean_i [ (2 - 2 cos(p1_i, z2_i)) + (2 - 2 cos(p2_i, z1_i)) ],  all inputs [N, D].
// p = online predictions, z = target projections (of the other view).
Tensor byol_loss(const Tensor& p1, const Tensor& z2, const Tensor& p2, const Tensor& z1);
// logits [N, K], labels [N] (i32 or i64, each in [0, K)) -> mean of -log softmax(logits)[label].
// On the CPU an out-of-range label is an error; on a GPU the labels are not read back (no host
// synchronisation): an out-of-range label makes the loss NaN.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);

// --- metrics (no autograd) ---------------------------------------------------------------------------------
// logits [N, K], labels [N] (i32 or i64) -> a one-element tensor (shape [], the logits' dtype, on their
// device) holding the number of rows whose top-1 class (the first maximum on ties, as std::max_element)
// equals the label; a label outside [0, K) never matches. Exact for N < 2^24. Reading it is the caller's
// choice of synchronisation point.
Tensor count_top1_correct(const Tensor& logits, const Tensor& labels);

// --- batch-dimension shape ops -------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& parts);            // along dim 0
Tensor slice(const Tensor& x, int64_t start, int64_t end);  // rows [start, end) of dim 0
// Every rank's x [N, ...] stacked in rank order -> [world * N, ...] (the same N on every rank), through
// `sum` (an in-place sum across the ranks, as the synced-BN hook; empty when world is 1): this rank's
// rows are written into zeros and summed. Backward sums the gradient across the ranks the same way and
// keeps this rank's rows, so a loss over the gathered rows reaches every rank's own inputs. A collective
// in both passes: every rank calls it, in the same order. world 1 returns x itself.
Tensor all_gather_rows(const Tensor& x, int64_t rank, int64_t world, const StatsAllReduce& sum);

// dst += src in place, outside autograd (gradient accumulation, tests).
void add_(Tensor& dst, const Tensor& src);

}  // namespace byol::ops
