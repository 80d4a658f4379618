// CUDA halves of the op front ends (see cuda_ops.h). Conventions as on the CPU: outputs and activation
// gradients are fresh tensors (written with =); saved tensors are captured only when a gradient needs
// them; scalar losses and their incoming gradients stay on the device.
#include "engine/cuda/cuda_ops.h"

#include <array>

#include "engine/cuda/blas.h"
#include "engine/cuda/context.h"
#include "engine/cuda/conv_cudnn.h"
#include "kernels/batch_norm.cuh"
#include "kernels/byol_loss.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/metrics.cuh"

namespace byol::ops::detail {
namespace {

void require_f32(const char* op, const char* arg, const Tensor& t) {
  BYOL_CHECK(t.dtype() == DType::f32, op, ": argument '", arg,
             "' expected dtype f32 on a GPU (the CUDA backend runs float32; f64 runs on the CPU), got ",
             t.describe());
}

Tensor like(const Shape& shape, const Tensor& ref) {
  return Tensor::empty(shape, ref.dtype(), ref.device());
}

float* f(const Tensor& t) {
  return t.data<float>();
}
float* f_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

cudaStream_t stream() {
  return cuda::compute_stream();
}

}  // namespace

// --- convolution and pooling -------------------------------------------------------------------------

// --- normalisation -------------------------------------------------------------------------------------

namespace {
void call_stats_hook(const StatsAllReduce& hook, Tensor& sums, int64_t expected, const Device& device,
                     const char* phase) {
  if (!hook) return;
  hook(sums);
  BYOL_CHECK(
      sums.defined() && sums.numel() == expected && sums.dtype() == DType::f64 && sums.device() == device,
      "batch_norm", phase, ": the statistics all-reduce hook must leave an f64 tensor of ", expected,
      " values on ", device_name(device), " in place, got ", sums.describe());
}
}  // namespace

Tensor batch_norm_cuda(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, const BatchNormOptions& opt) {
  require_f32("batch_norm", "input", x);
  // Groups (BatchNormOptions::groups): G consecutive row blocks with their own statistics; every buffer
  // below is [G, ...] and the kernels run once per group on pointer offsets, in stream order (so the
  // running statistics are updated group after group); the hook all-reduces all groups at once.
  const int64_t C = x.size(-1), M = x.numel() / std::max<int64_t>(C, 1), G = opt.groups, Mg = M / G;
  const int64_t S = 2 * C + 1;  // [count, sum[C], sum_sq[C]] per group
  Tensor y = like(x.shape(), x);
  Tensor mean = like({G * C}, x), invstd = like({G * C}, x);
  Tensor stats;  // f64 on the device; stats[g * S] is backward's count of group g
  if (opt.training) {
    stats = Tensor::empty({G * S}, DType::f64, x.device());
    for (int64_t g = 0; g < G; ++g)
      kernels::batch_norm_partial_sums(f(x) + g * Mg * C, Mg, C, stats.data<double>() + g * S, stream());
    call_stats_hook(opt.all_reduce, stats, G * S, x.device(), "");
    for (int64_t g = 0; g < G; ++g)
      kernels::batch_norm_stats(stats.data<double>() + g * S, C, opt.eps, opt.decay, f(mean) + g * C,
                                f(invstd) + g * C, f_or_null(running_mean), f_or_null(running_var), stream());
  } else {
    for (int64_t g = 0; g < G; ++g)
      kernels::batch_norm_eval_stats(f(running_mean), f(running_var), C, opt.eps, f(mean) + g * C,
                                     f(invstd) + g * C, stream());
  }
  for (int64_t g = 0; g < G; ++g)
    kernels::batch_norm_apply(f(x) + g * Mg * C, f(mean) + g * C, f(invstd) + g * C, f(gamma), f(beta),
                              f(y) + g * Mg * C, Mg, C, stream());

  GradRecorder rec("batch_norm", {x, gamma, beta});
  if (rec.active()) {
    rec.record(y, [x, gamma, mean, invstd, stats, G, Mg, C, S, training = opt.training,
                   all_reduce = opt.all_reduce, need_dx = rec.needs(0)](const Tensor& dy_in) {
      Tensor dy = dy_in.contiguous();
      Tensor dgamma = like({C}, x), dbeta = like({C}, x), dx;
      // Local sums give dgamma and dbeta (each rank's share, summed over the groups; gradients are
      // averaged later); dx of synced batch norm needs the sums over every rank's batch.
      Tensor sums = Tensor::empty({G * 2 * C}, DType::f64, x.device());
      Tensor dgamma_g = G > 1 ? like({C}, x) : Tensor(), dbeta_g = G > 1 ? like({C}, x) : Tensor();
      for (int64_t g = 0; g < G; ++g) {
        // The kernel writes dbeta / dgamma; later groups go to scratch and are added.
        float* db = g == 0 ? f(dbeta) : f(dbeta_g);
        float* dg = g == 0 ? f(dgamma) : f(dgamma_g);
        kernels::batch_norm_backward_sums(f(dy) + g * Mg * C, f(x) + g * Mg * C, f(mean) + g * C,
                                          f(invstd) + g * C, Mg, C, sums.data<double>() + g * 2 * C, db, dg,
                                          stream());
        if (g > 0) {
          kernels::add_inplace(f(dbeta), f(dbeta_g), C, stream());
          kernels::add_inplace(f(dgamma), f(dgamma_g), C, stream());
        }
      }
      if (need_dx) {
        dx = like(x.shape(), x);
        if (training) {
          call_stats_hook(all_reduce, sums, G * 2 * C, x.device(), " backward");
          for (int64_t g = 0; g < G; ++g)
            kernels::batch_norm_backward_dx(f(dy) + g * Mg * C, f(x) + g * Mg * C, f(mean) + g * C,
                                            f(invstd) + g * C, f(gamma), sums.data<double>() + g * 2 * C,
                                            stats.data<double>() + g * S, f(dx) + g * Mg * C, Mg, C,
                                            stream());
        } else {
          for (int64_t g = 0; g < G; ++g)
            kernels::batch_norm_backward_dx_eval(f(dy) + g * Mg * C, f(gamma), f(invstd) + g * C,
                                                 f(dx) + g * Mg * C, Mg, C, stream());
        }
      }
      return std::vector<Tensor>{dx, dgamma, dbeta};
    });
  }
  return y;
}

// --- dense ---------------------------------------------------------------------------------------------

Tensor count_top1_correct_cuda(const Tensor& logits, const Tensor& labels) {
  require_f32("count_top1_correct", "logits", logits);
  const int64_t N = logits.size(0), K = logits.size(1);
  Tensor count = like({}, logits);
  if (labels.dtype() == DType::i32) {
    kernels::count_top1_correct(f(logits), labels.data<int32_t>(), N, K, f(count), stream());
  } else {
    kernels::count_top1_correct(f(logits), labels.data<int64_t>(), N, K, f(count), stream());
  }
  return count;
}

// --- elementwise and reductions --------------------------------------------------------------------------

void add_inplace_cuda(Tensor& dst, const Tensor& src) {
  require_f32("add_", "dst", dst);
  Tensor s = src.contiguous();
  kernels::add_inplace(f(dst), f(s), dst.numel(), stream());
}

Tensor cast_cuda(const Tensor& x, DType target) {
  const auto supported = [](DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; };
  BYOL_CHECK(supported(x.dtype()) && supported(target), "Tensor::to(", dtype_name(target), "): casting ",
             x.describe(), " on a GPU supports f32, f64 and bf16; copy it to the CPU for other dtypes");
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), target, x.device());
  kernels::cast(src.raw_data(), static_cast<int>(src.dtype()), out.raw_data(), static_cast<int>(target),
                x.numel(), stream());
  return out;
}

}  // namespace byol::ops::detail
