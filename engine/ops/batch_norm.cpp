// Front end of batch_norm: per-view groups, the synced-statistics hook, the running statistics, autograd.
#include <array>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

namespace {

// The synced-BN hook (BatchNormOptions::all_reduce) sums `sums` across the ranks in place, on its device.
void call_stats_hook(const StatsAllReduce& hook, Tensor& sums, int64_t expected, const Device& device,
                     const char* phase) {
  if (!hook) return;
  hook(sums);
  BYOL_CHECK(
      sums.defined() && sums.numel() == expected && sums.dtype() == DType::f64 && sums.device() == device,
      "batch_norm", phase, ": the statistics all-reduce hook must leave an f64 tensor of ", expected,
      " values on ", device_name(device), " in place, got ", sums.describe());
}

// batch_norm, and with relu the fused relu(batch_norm(x) + residual) (residual optional): the same
// statistics, hook and groups; the epilogue runs in the normalising pass, and its backward masks dy with
// the saved output once, the masked gradient serving both the residual and batch norm's backward.
Tensor batch_norm_impl(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var, const BatchNormOptions& opt,
                       const Tensor& residual, bool relu) {
  check_defined(op, "input", x);
  BYOL_CHECK(x.dim() == 2 || x.dim() == 4, op, ": argument 'input' expected 2 dimensions [N, C] or 4 ",
             "dimensions [N, H, W, C], got ", x.describe());
  check_activation(op, "input", x);
  check_contiguous(op, "input", x);
  const int64_t C = x.size(-1), M = x.numel() / std::max<int64_t>(C, 1);
  for (auto [arg, t] : {std::pair{"gamma", &gamma}, {"beta", &beta}}) {
    check_shape(op, arg, *t, {C}, "one per channel");
    check_param(op, arg, *t, x);
    check_contiguous(op, arg, *t);
  }
  BYOL_CHECK(running_mean.defined() == running_var.defined(), op,
             ": expected running_mean and running_var both defined or both undefined");
  const bool has_running = running_mean.defined();
  if (has_running) {
    for (auto [arg, t] : {std::pair{"running_mean", &running_mean}, {"running_var", &running_var}}) {
      check_shape(op, arg, *t, {C}, "one per channel");
      check_param(op, arg, *t, x);
      check_contiguous(op, arg, *t);
    }
  }
  BYOL_CHECK(opt.training || has_running, op, ": evaluation mode needs running_mean and running_var");
  BYOL_CHECK(opt.eps > 0 && opt.decay >= 0 && opt.decay <= 1, op,
             ": expected eps > 0 and 0 <= decay <= 1, got eps ", opt.eps, " decay ", opt.decay);
  BYOL_CHECK(!opt.training || M > 0, op, ": training mode needs at least one value per channel, got ",
             x.describe());
  BYOL_CHECK(opt.groups >= 1 && x.size(0) % opt.groups == 0, op, ": option 'groups' (", opt.groups,
             ") must be >= 1 and divide the batch dimension of ", x.describe());
  if (residual.defined()) {
    check_shape(op, "residual", residual, x.shape(), "the input's shape");
    check_like(op, "residual", residual, "input", x);
    check_contiguous(op, "residual", residual);
  }
  // Groups: the rows split into G equal consecutive parts with their own statistics (BYOL's two views in
  // one pass). Every buffer below is [G, ...] on the input's device, and the backend runs once per group
  // on pointer offsets, in order (so the running statistics are updated group after group); the hook
  // all-reduces all groups at once.
  const int64_t G = opt.groups, Mg = M / G, S = 2 * C + 1;  // stats: [count, sum[C], sum_sq[C]] per group
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const DType pt = compute_dtype(x.dtype());  // statistics and parameters: f32 for bf16 activations
  Tensor mean = Tensor::empty({G * C}, pt, x.device()), invstd = Tensor::empty({G * C}, pt, x.device());
  Tensor stats;  // f64; stats[g * S] is backward's count of group g
  if (opt.training) {
    stats = Tensor::empty({G * S}, DType::f64, x.device());
    double* sp = stats.data<double>();
    for (int64_t g = 0; g < G; ++g)
      on_backend_act(
          op, x,
          [&](auto tag) {
            cpu::batch_norm_partial_sums(x.data<decltype(tag)>() + g * Mg * C, Mg, C, sp + g * S);
          },
          [&](auto tag) {
            using X = decltype(tag);
            BYOL_ON_CUDA(op, x, cuda::batch_norm_partial_sums(x.data<X>() + g * Mg * C, Mg, C, sp + g * S));
          });
    call_stats_hook(opt.all_reduce, stats, G * S, x.device(), "");
    sp = stats.data<double>();  // in case the hook replaced the tensor
    for (int64_t g = 0; g < G; ++g)
      on_backend_act(
          op, x,
          [&](auto tag) {
            using T = compute_t<decltype(tag)>;
            cpu::batch_norm_stats(sp + g * S, C, opt.eps, opt.decay, mean.data<T>() + g * C,
                                  invstd.data<T>() + g * C, data_or_null<T>(running_mean),
                                  data_or_null<T>(running_var));
          },
          [&](auto) {  // the statistics are float32 whatever the activations' storage
            BYOL_ON_CUDA(
                op, x,
                cuda::batch_norm_stats(sp + g * S, C, opt.eps, opt.decay, mean.data<float>() + g * C,
                                       invstd.data<float>() + g * C, data_or_null<float>(running_mean),
                                       data_or_null<float>(running_var)));
          });
  } else {
    for (int64_t g = 0; g < G; ++g)
      on_backend_act(
          op, x,
          [&](auto tag) {
            using T = compute_t<decltype(tag)>;
            cpu::batch_norm_eval_stats(running_mean.data<T>(), running_var.data<T>(), C, opt.eps,
                                       mean.data<T>() + g * C, invstd.data<T>() + g * C);
          },
          [&](auto) {  // the statistics are float32 whatever the activations' storage
            BYOL_ON_CUDA(
                op, x,
                cuda::batch_norm_eval_stats(running_mean.data<float>(), running_var.data<float>(), C, opt.eps,
                                            mean.data<float>() + g * C, invstd.data<float>() + g * C));
          });
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t rows = g * Mg * C;  // this group's first element
    on_backend_act(
        op, x,
        [&](auto tag) {
          using X = decltype(tag);
          using T = compute_t<X>;
          if (relu)
            cpu::batch_norm_apply_relu(x.data<X>() + rows, mean.data<T>() + g * C, invstd.data<T>() + g * C,
                                       gamma.data<T>(), beta.data<T>(),
                                       residual.defined() ? residual.data<X>() + rows : nullptr,
                                       y.data<X>() + rows, Mg, C);
          else
            cpu::batch_norm_apply(x.data<X>() + rows, mean.data<T>() + g * C, invstd.data<T>() + g * C,
                                  gamma.data<T>(), beta.data<T>(), y.data<X>() + rows, Mg, C);
        },
        [&](auto tag) {
          using X = decltype(tag);
          if (relu)
            BYOL_ON_CUDA(op, x,
                         cuda::batch_norm_apply_relu(x.data<X>() + rows, mean.data<float>() + g * C,
                                                     invstd.data<float>() + g * C, gamma.data<float>(),
                                                     beta.data<float>(),
                                                     residual.defined() ? residual.data<X>() + rows : nullptr,
                                                     y.data<X>() + rows, Mg, C));
          else
            BYOL_ON_CUDA(op, x,
                         cuda::batch_norm_apply(x.data<X>() + rows, mean.data<float>() + g * C,
                                                invstd.data<float>() + g * C, gamma.data<float>(),
                                                beta.data<float>(), y.data<X>() + rows, Mg, C));
        });
  }

  std::vector<Tensor> inputs = {x, gamma, beta};
  if (residual.defined()) inputs.push_back(residual);
  GradRecorder rec(op, inputs);
  if (rec.active()) {
    // relu: the output, saved through a plain view (capturing y itself would make y's node own y).
    rec.record(y, [op, x, gamma, mean, invstd, stats, G, Mg, C, S, training = opt.training,
                   all_reduce = opt.all_reduce, need_dx = rec.needs(0), relu,
                   has_residual = residual.defined(),
                   ys = relu ? y.view(y.shape()) : Tensor()](const Tensor& dy_in) {
      Tensor dy = dy_in.contiguous();
      // relu: the masked gradient, of the residual and the dy of batch norm's backward
      if (relu) dy = relu_grad(op, ys, dy);
      // The gradients in the order of the recorded inputs (x, gamma, beta[, residual]).
      const auto grads = [&](const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
        return has_residual ? std::vector<Tensor>{dx, dgamma, dbeta, dy}
                            : std::vector<Tensor>{dx, dgamma, dbeta};
      };
      const DType pt = compute_dtype(x.dtype());  // the parameters' gradients: f32 for bf16 activations
      Tensor dgamma = Tensor::empty({C}, pt, x.device()), dbeta = Tensor::empty({C}, pt, x.device()), dx;
      // Local sums give dgamma and dbeta (each rank's share, summed over the groups; gradients are averaged
      // later); dx of synced batch norm needs the sums over every rank's batch.
      Tensor sums = Tensor::empty({G * 2 * C}, DType::f64, x.device());
      Tensor dgamma_g = G > 1 ? Tensor::empty({C}, pt, x.device()) : Tensor();
      Tensor dbeta_g = G > 1 ? Tensor::empty({C}, pt, x.device()) : Tensor();
      for (int64_t g = 0; g < G; ++g) {
        // Group 0 writes dbeta / dgamma; later groups go to scratch and are added.
        const Tensor& db = g == 0 ? dbeta : dbeta_g;
        const Tensor& dg = g == 0 ? dgamma : dgamma_g;
        double* sp = sums.data<double>() + g * 2 * C;
        on_backend_act(
            op, x,
            [&](auto tag) {
              using X = decltype(tag);
              using T = compute_t<X>;
              cpu::batch_norm_backward_sums(dy.data<X>() + g * Mg * C, x.data<X>() + g * Mg * C,
                                            mean.data<T>() + g * C, invstd.data<T>() + g * C, Mg, C, sp,
                                            db.data<T>(), dg.data<T>());
              if (g > 0) {
                cpu::add_inplace(dbeta.data<T>(), dbeta_g.data<T>(), C);
                cpu::add_inplace(dgamma.data<T>(), dgamma_g.data<T>(), C);
              }
            },
            [&](auto tag) {
              using X = decltype(tag);
              BYOL_ON_CUDA(
                  op, x,
                  cuda::batch_norm_backward_sums(dy.data<X>() + g * Mg * C, x.data<X>() + g * Mg * C,
                                                 mean.data<float>() + g * C, invstd.data<float>() + g * C, Mg,
                                                 C, sp, db.data<float>(), dg.data<float>()));
              if (g > 0) {
                BYOL_ON_CUDA(op, x, cuda::add_inplace(dbeta.data<float>(), dbeta_g.data<float>(), C));
                BYOL_ON_CUDA(op, x, cuda::add_inplace(dgamma.data<float>(), dgamma_g.data<float>(), C));
              }
            });
      }
      if (!need_dx) return grads(dx, dgamma, dbeta);
      dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      if (training) call_stats_hook(all_reduce, sums, G * 2 * C, x.device(), " backward");
      for (int64_t g = 0; g < G; ++g) {
        const double* sp = sums.data<double>() + g * 2 * C;
        const double* count = training ? stats.data<double>() + g * S : nullptr;
        on_backend_act(
            op, x,
            [&](auto tag) {
              using X = decltype(tag);
              using T = compute_t<X>;
              if (training)
                cpu::batch_norm_backward_dx(dy.data<X>() + g * Mg * C, x.data<X>() + g * Mg * C,
                                            mean.data<T>() + g * C, invstd.data<T>() + g * C, gamma.data<T>(),
                                            sp, count, dx.data<X>() + g * Mg * C, Mg, C);
              else
                cpu::batch_norm_backward_dx_eval(dy.data<X>() + g * Mg * C, gamma.data<T>(),
                                                 invstd.data<T>() + g * C, dx.data<X>() + g * Mg * C, Mg, C);
            },
            [&](auto tag) {
              using X = decltype(tag);
              if (training)
                BYOL_ON_CUDA(op, x,
                             cuda::batch_norm_backward_dx(dy.data<X>() + g * Mg * C, x.data<X>() + g * Mg * C,
                                                          mean.data<float>() + g * C,
                                                          invstd.data<float>() + g * C, gamma.data<float>(),
                                                          sp, count, dx.data<X>() + g * Mg * C, Mg, C));
              else
                BYOL_ON_CUDA(op, x,
                             cuda::batch_norm_backward_dx_eval(dy.data<X>() + g * Mg * C, gamma.data<float>(),
                                                               invstd.data<float>() + g * C,
                                                               dx.data<X>() + g * Mg * C, Mg, C));
            });
      }
      return grads(dx, dgamma, dbeta);
    });
  }
  return y;
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, const BatchNormOptions& opt) {
  return batch_norm_impl("batch_norm", x, gamma, beta, running_mean, running_var, opt, Tensor(), false);
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, const BatchNormOptions& opt, const Tensor& residual) {
  return batch_norm_impl("batch_norm_relu", x, gamma, beta, running_mean, running_var, opt, residual, true);
}

}  // namespace byol::ops
