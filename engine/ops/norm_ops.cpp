// Front ends of batch_norm, l2_normalize and byol_loss.
#include <array>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_ops.h"
#include "engine/ops.h"
#include "engine/ops/check.h"
#include "kernels/math/batch_norm_math.h"

namespace byol::ops {
using namespace detail;

namespace {

// Per-channel tensor of T from doubles.
template <class T>
Tensor channel_tensor(const std::vector<double>& v, Device device) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dtype_of<T>::value, device);
  T* p = t.data<T>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(v[i]);
  return t;
}

void call_all_reduce(const BatchNormOptions& opt, Tensor& sums, int64_t expected) {
  if (!opt.all_reduce) return;
  opt.all_reduce(sums);
  BYOL_CHECK(sums.defined() && sums.numel() == expected && sums.dtype() == DType::f64,
             "batch_norm: the statistics all-reduce hook must leave an f64 tensor of ", expected,
             " values in place, got ", sums.describe());
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, const BatchNormOptions& opt) {
  const char* op = "batch_norm";
  check_defined(op, "input", x);
  BYOL_CHECK(x.dim() == 2 || x.dim() == 4, op, ": argument 'input' expected 2 dimensions [N, C] or 4 ",
             "dimensions [N, H, W, C], got ", x.describe());
  check_floating(op, "input", x);
  check_contiguous(op, "input", x);
  const int64_t C = x.size(-1), M = x.numel() / std::max<int64_t>(C, 1);
  for (auto [arg, t] : {std::pair{"gamma", &gamma}, {"beta", &beta}}) {
    check_shape(op, arg, *t, {C}, "one per channel");
    check_like(op, arg, *t, "input", x);
    check_contiguous(op, arg, *t);
  }
  BYOL_CHECK(running_mean.defined() == running_var.defined(), op,
             ": expected running_mean and running_var both defined or both undefined");
  const bool has_running = running_mean.defined();
  if (has_running) {
    for (auto [arg, t] : {std::pair{"running_mean", &running_mean}, {"running_var", &running_var}}) {
      check_shape(op, arg, *t, {C}, "one per channel");
      check_like(op, arg, *t, "input", x);
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
  if (!x.device().is_cpu())
    BYOL_ON_CUDA(op, x, return batch_norm_cuda(x, gamma, beta, running_mean, running_var, opt));

  // Groups: the rows split into G equal consecutive parts with their own statistics (BYOL's two views
  // in one pass). Stats, sums and the saved mean / invstd are [G, ...]; the hook sees all groups at once.
  const int64_t G = opt.groups, Mg = M / G;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean, invstd;
  std::vector<double> counts(static_cast<size_t>(G), static_cast<double>(Mg));
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<double> mean_d(G * C), invstd_d(G * C);
    if (opt.training) {
      Tensor stats = Tensor::empty({G * (2 * C + 1)}, DType::f64);
      for (int64_t g = 0; g < G; ++g)
        cpu::batch_norm_partial_sums(x.data<T>() + g * Mg * C, Mg, C, stats.data<double>() + g * (2 * C + 1));
      call_all_reduce(opt, stats, G * (2 * C + 1));
      for (int64_t g = 0; g < G; ++g) {
        const double* s = stats.data<double>() + g * (2 * C + 1);
        counts[g] = s[0];
        for (int64_t c = 0; c < C; ++c) {
          const math::BnStats st = math::bn_stats_from_sums(s[0], s[1 + c], s[1 + C + c], opt.eps);
          mean_d[g * C + c] = st.mean;
          invstd_d[g * C + c] = st.invstd;
        }
        if (has_running) {  // one update per group, in order: as G separate calls would do
          T* rm = running_mean.data<T>();
          T* rv = running_var.data<T>();
          const T decay = static_cast<T>(opt.decay);
          for (int64_t c = 0; c < C; ++c) {
            const double var = math::bn_batch_var(s[0], s[1 + c], s[1 + C + c]);
            rm[c] = math::bn_running_update(rm[c], static_cast<T>(mean_d[g * C + c]), decay);
            rv[c] = math::bn_running_update(rv[c], static_cast<T>(var), decay);
          }
        }
      }
    } else {
      const T* rm = running_mean.data<T>();
      const T* rv = running_var.data<T>();
      for (int64_t g = 0; g < G; ++g)
        for (int64_t c = 0; c < C; ++c) {
          mean_d[g * C + c] = rm[c];
          invstd_d[g * C + c] = 1.0 / std::sqrt(static_cast<double>(rv[c]) + opt.eps);
        }
    }
    mean = channel_tensor<T>(mean_d, x.device());
    invstd = channel_tensor<T>(invstd_d, x.device());
    for (int64_t g = 0; g < G; ++g)
      cpu::batch_norm_apply(x.data<T>() + g * Mg * C, mean.data<T>() + g * C, invstd.data<T>() + g * C,
                            gamma.data<T>(), beta.data<T>(), y.data<T>() + g * Mg * C, Mg, C);
  });

  GradRecorder rec(op, {x, gamma, beta});
  if (rec.active()) {
    rec.record(y, [x, gamma, mean, invstd, counts, G, Mg, C, training = opt.training,
                   all_reduce = opt.all_reduce, need_dx = rec.needs(0)](const Tensor& dy_in) {
      Tensor dy = dy_in.contiguous();
      Tensor dx, dgamma = Tensor::empty({C}, x.dtype()), dbeta = Tensor::empty({C}, x.dtype());
      dispatch_float(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        // Local sums give dgamma and dbeta (each rank's share, summed over groups; gradients are averaged
        // later); dx of synced batch norm needs the sums over every rank's batch.
        Tensor sums = Tensor::empty({G * 2 * C}, DType::f64);
        double* sp = sums.data<double>();
        for (int64_t g = 0; g < G; ++g)
          cpu::batch_norm_backward_sums(dy.data<T>() + g * Mg * C, x.data<T>() + g * Mg * C,
                                        mean.data<T>() + g * C, invstd.data<T>() + g * C, Mg, C,
                                        sp + g * 2 * C);
        for (int64_t c = 0; c < C; ++c) {
          double db = 0, dg = 0;
          for (int64_t g = 0; g < G; ++g) db += sp[g * 2 * C + c], dg += sp[g * 2 * C + C + c];
          dbeta.data<T>()[c] = static_cast<T>(db);
          dgamma.data<T>()[c] = static_cast<T>(dg);
        }
        if (!need_dx) return;
        dx = Tensor::empty(x.shape(), x.dtype());
        if (training) {
          if (all_reduce) {
            all_reduce(sums);
            BYOL_CHECK(sums.numel() == G * 2 * C && sums.dtype() == DType::f64,
                       "batch_norm backward: the "
                       "statistics all-reduce hook must leave an f64 tensor of ",
                       G * 2 * C, " values");
          }
          for (int64_t g = 0; g < G; ++g)
            cpu::batch_norm_backward_dx(dy.data<T>() + g * Mg * C, x.data<T>() + g * Mg * C,
                                        mean.data<T>() + g * C, invstd.data<T>() + g * C, gamma.data<T>(),
                                        sums.data<double>() + g * 2 * C, counts[g], dx.data<T>() + g * Mg * C,
                                        Mg, C);
        } else {
          for (int64_t g = 0; g < G; ++g)
            cpu::batch_norm_backward_dx_eval(dy.data<T>() + g * Mg * C, gamma.data<T>(),
                                             invstd.data<T>() + g * C, dx.data<T>() + g * Mg * C, Mg, C);
        }
      });
      return std::vector<Tensor>{dx, dgamma, dbeta};
    });
  }
  return y;
}

Tensor l2_normalize(const Tensor& x) {
  const char* op = "l2_normalize";
  check_rank(op, "input", x, 2, "[N, D]");
  check_floating(op, "input", x);
  check_contiguous(op, "input", x);
  const int64_t N = x.size(0), D = x.size(1);
  Tensor y = Tensor::empty({N, D}, x.dtype(), x.device());
  Tensor inv_norm = Tensor::empty({N}, x.dtype(), x.device());
  on_backend(
      op, x,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::l2_normalize_forward(x.data<T>(), y.data<T>(), inv_norm.data<T>(), N, D);
      },
      [&] {
        BYOL_ON_CUDA(
            op, x,
            cuda::l2_normalize_forward(x.data<float>(), y.data<float>(), inv_norm.data<float>(), N, D));
      });
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(y, [op, x, y_saved = y.view(y.shape()), inv_norm, N, D](const Tensor& dy_in) {
      const Tensor dy = dy_in.contiguous();
      Tensor dx = Tensor::empty({N, D}, dy.dtype(), dy.device());
      on_backend(
          op, dy,
          [&](auto tag) {
            using T = decltype(tag);
            cpu::l2_normalize_backward(dy.data<T>(), x.data<T>(), y_saved.data<T>(), inv_norm.data<T>(),
                                       dx.data<T>(), N, D);
          },
          [&] {
            BYOL_ON_CUDA(op, dy,
                         cuda::l2_normalize_backward(dy.data<float>(), x.data<float>(), y_saved.data<float>(),
                                                     inv_norm.data<float>(), dx.data<float>(), N, D));
          });
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

Tensor byol_loss(const Tensor& p1, const Tensor& z2, const Tensor& p2, const Tensor& z1) {
  const char* op = "byol_loss";
  check_rank(op, "p1", p1, 2, "[N, D]");
  check_floating(op, "p1", p1);
  check_contiguous(op, "p1", p1);
  for (auto [arg, t] : {std::pair{"z2", &z2}, {"p2", &p2}, {"z1", &z1}}) {
    check_shape(op, arg, *t, p1.shape(), "the shape of 'p1'");
    check_like(op, arg, *t, "p1", p1);
    check_contiguous(op, arg, *t);
  }
  BYOL_CHECK(p1.size(0) > 0, op, ": expected a non-empty batch, got ", p1.describe());
  const int64_t N = p1.size(0), D = p1.size(1);
  // The loss (and, in backward, its gradient) stays on the inputs' device: nothing waits for a GPU.
  Tensor loss = Tensor::empty({}, p1.dtype(), p1.device());
  on_backend(
      op, p1,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::byol_loss_forward(p1.data<T>(), z2.data<T>(), p2.data<T>(), z1.data<T>(), N, D, loss.data<T>());
      },
      [&] {
        BYOL_ON_CUDA(op, p1,
                     cuda::byol_loss_forward(p1.data<float>(), z2.data<float>(), p2.data<float>(),
                                             z1.data<float>(), N, D, loss.data<float>()));
      });
  GradRecorder rec(op, {p1, z2, p2, z1});
  if (rec.active()) {
    const std::array<bool, 4> need{rec.needs(0), rec.needs(1), rec.needs(2), rec.needs(3)};
    rec.record(loss, [op, p1, z2, p2, z1, N, D, need](const Tensor& g_in) {
      const Tensor g = g_in.contiguous();
      std::vector<Tensor> grads(4);
      for (int i = 0; i < 4; ++i)
        if (need[i]) grads[i] = Tensor::empty({N, D}, p1.dtype(), p1.device());
      on_backend(
          op, p1,
          [&](auto tag) {
            using T = decltype(tag);
            auto ptr = [&](int i) { return need[i] ? grads[i].data<T>() : nullptr; };
            cpu::byol_loss_backward(p1.data<T>(), z2.data<T>(), p2.data<T>(), z1.data<T>(), g.data<T>(),
                                    ptr(0), ptr(1), ptr(2), ptr(3), N, D);
          },
          [&] {
            BYOL_ON_CUDA(op, p1,
                         cuda::byol_loss_backward(
                             p1.data<float>(), z2.data<float>(), p2.data<float>(), z1.data<float>(),
                             g.data<float>(), data_or_null<float>(grads[0]), data_or_null<float>(grads[1]),
                             data_or_null<float>(grads[2]), data_or_null<float>(grads[3]), N, D));
          });
      return grads;
    });
  }
  return loss;
}

}  // namespace byol::ops
