// Front ends of max_pool2d and global_avg_pool: argument checks, dispatch, autograd records. Both take
// bf16 activations (float math, one rounding per stored value).
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) {
  const char* op = "max_pool2d";
  check_rank(op, "input", x, 4, "[N, H, W, C]");
  check_activation(op, "input", x);
  check_contiguous(op, "input", x);
  BYOL_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel, op,
             ": expected kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2, got kernel ", kernel,
             " stride ", stride, " padding ", padding);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  BYOL_CHECK(H + 2 * padding >= kernel && W + 2 * padding >= kernel, op, ": the ", kernel, "x", kernel,
             " window does not fit the padded input ", x.describe());
  BYOL_CHECK(H * W * C < (int64_t(1) << 31), op, ": one image of ", x.describe(),
             " has more than 2^31 elements");
  const int64_t P = (H + 2 * padding - kernel) / stride + 1, Q = (W + 2 * padding - kernel) / stride + 1;
  Tensor y = Tensor::empty({N, P, Q, C}, x.dtype(), x.device());
  Tensor argmax = Tensor::empty({N, P, Q, C}, DType::i32, x.device());
  on_backend_act(
      op, x,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::max_pool2d_forward(x.data<T>(), y.data<T>(), argmax.data<int32_t>(), N, H, W, C, P, Q, kernel,
                                stride, padding);
      },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, x,
                     cuda::max_pool2d_forward(x.data<T>(), y.data<T>(), argmax.data<int32_t>(), N, H, W, C, P,
                                              Q, kernel, stride, padding));
      });
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(
        y,
        [op, argmax, N, H, W, C, P, Q, kernel, stride, padding](const Tensor& dy_in) -> std::vector<Tensor> {
          const Tensor dy = dy_in.contiguous();
          Tensor dx = Tensor::empty({N, H, W, C}, dy.dtype(), dy.device());
          on_backend_act(
              op, dy,
              [&](auto tag) {
                using T = decltype(tag);
                cpu::max_pool2d_backward(dy.data<T>(), argmax.data<int32_t>(), dx.data<T>(), N, H, W, C, P,
                                         Q);
              },
              [&](auto tag) {
                using T = decltype(tag);
                BYOL_ON_CUDA(op, dy,
                             cuda::max_pool2d_backward(dy.data<T>(), argmax.data<int32_t>(), dx.data<T>(), N,
                                                       H, W, C, P, Q, kernel, stride, padding));
              });
          return {dx};
        });
  }
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  const char* op = "global_avg_pool";
  check_rank(op, "input", x, 4, "[N, H, W, C]");
  check_activation(op, "input", x);
  check_contiguous(op, "input", x);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  BYOL_CHECK(H * W > 0, op, ": argument 'input' expected a non-empty image, got ", x.describe());
  Tensor y = Tensor::empty({N, C}, x.dtype(), x.device());
  on_backend_act(
      op, x,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::global_avg_pool_forward(x.data<T>(), y.data<T>(), N, H * W, C);
      },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, x, cuda::global_avg_pool_forward(x.data<T>(), y.data<T>(), N, H * W, C));
      });
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(y, [op, N, H, W, C](const Tensor& dy_in) -> std::vector<Tensor> {
      const Tensor dy = dy_in.contiguous();
      Tensor dx = Tensor::empty({N, H, W, C}, dy.dtype(), dy.device());
      on_backend_act(
          op, dy,
          [&](auto tag) {
            using T = decltype(tag);
            cpu::global_avg_pool_backward(dy.data<T>(), dx.data<T>(), N, H * W, C);
          },
          [&](auto tag) {
            using T = decltype(tag);
            BYOL_ON_CUDA(op, dy, cuda::global_avg_pool_backward(dy.data<T>(), dx.data<T>(), N, H * W, C));
          });
      return {dx};
    });
  }
  return y;
}

}  // namespace byol::ops
