// Front ends of l2_normalize and byol_loss (BYOL's regression loss, sec. 3.1 eq. 2).
#include <array>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

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
