// Front end of conv2d: argument checks, dispatch (oneDNN / im2col on the CPU, cuDNN on the GPU), autograd
// record.
#include <type_traits>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/conv_cudnn.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

Tensor conv2d(const Tensor& x, const Tensor& w, Conv2dParams prm) {
  const char* op = "conv2d";
  check_rank(op, "input", x, 4, "[N, H, W, C]");
  check_rank(op, "weight", w, 4, "[K, R, S, C]");
  check_activation(op, "input", x);
  check_param(op, "weight", w, x);
  check_contiguous(op, "input", x);
  check_contiguous(op, "weight", w);
  BYOL_CHECK(prm.stride >= 1 && prm.padding >= 0, op, ": expected stride >= 1 and padding >= 0, got stride ",
             prm.stride, " padding ", prm.padding);
  cpu::ConvGeom g{x.size(0), x.size(1), x.size(2), x.size(3),  w.size(0),  w.size(1),
                  w.size(2), 0,         0,         prm.stride, prm.padding};
  BYOL_CHECK(w.size(3) == g.C, op, ": argument 'weight' expected [K, R, S, C] with C = ", g.C,
             " (the input's channels, NHWC), got ", w.describe());
  BYOL_CHECK(g.H + 2 * g.pad >= g.R && g.W + 2 * g.pad >= g.S, op, ": the ", g.R, "x", g.S,
             " filter does not fit the padded input ", x.describe(), " (padding ", g.pad, ")");
  // bf16 activations imply bf16 products (float32 weights, rounded as they are read).
  const bool bf16_act = x.dtype() == DType::bf16;
  if (!bf16_act) check_bf16_products(op, x, prm.bf16);
  g.bf16 = prm.bf16 || bf16_act;
  g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
  g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
  Tensor y = Tensor::empty({g.N, g.P, g.Q, g.K}, x.dtype(), x.device());
  on_backend_act(
      op, x,
      [&](auto tag) {
        using S = decltype(tag);
        if constexpr (std::is_same_v<S, bf16>)
          cpu::conv2d_forward_bf16(x.data<bf16>(), w.data<float>(), y.data<bf16>(), g);
        else
          cpu::conv2d_forward(x.data<S>(), w.data<S>(), y.data<S>(), g);
      },
      [&](auto tag) {
        using S = decltype(tag);
        BYOL_ON_CUDA(op, x, cuda::conv2d_forward(x.data<S>(), w.data<float>(), y.data<S>(), g));
      });

  GradRecorder rec(op, {x, w});
  if (rec.active()) {
    const bool need_dx = rec.needs(0), need_dw = rec.needs(1);
    // dx needs only the weights, dw only the input: save just what is required.
    rec.record(
        y,
        [op, g, xs = need_dw ? x : Tensor(), ws = need_dx ? w : Tensor(), need_dx,
         need_dw](const Tensor& dy_in) -> std::vector<Tensor> {
          const Tensor dy = dy_in.contiguous();
          Tensor dx, dw;
          if (need_dx) dx = Tensor::empty({g.N, g.H, g.W, g.C}, dy.dtype(), dy.device());
          if (need_dw) dw = Tensor::empty({g.K, g.R, g.S, g.C}, compute_dtype(dy.dtype()), dy.device());
          on_backend_act(
              op, dy,
              [&](auto tag) {
                using S = decltype(tag);
                if constexpr (std::is_same_v<S, bf16>) {
                  if (need_dx)
                    cpu::conv2d_backward_data_bf16(dy.data<bf16>(), ws.data<float>(), dx.data<bf16>(), g);
                  if (need_dw)
                    cpu::conv2d_backward_filter_bf16(dy.data<bf16>(), xs.data<bf16>(), dw.data<float>(), g);
                } else {
                  if (need_dx) cpu::conv2d_backward_data(dy.data<S>(), ws.data<S>(), dx.data<S>(), g);
                  if (need_dw) cpu::conv2d_backward_filter(dy.data<S>(), xs.data<S>(), dw.data<S>(), g);
                }
              },
              [&](auto tag) {
                using S = decltype(tag);
                if (need_dx)
                  BYOL_ON_CUDA(op, dy,
                               cuda::conv2d_backward_data(dy.data<S>(), ws.data<float>(), dx.data<S>(), g));
                if (need_dw)
                  BYOL_ON_CUDA(op, dy,
                               cuda::conv2d_backward_filter(dy.data<S>(), xs.data<S>(), dw.data<float>(), g));
              });
          return {dx, dw};
        });
  }
  return y;
}

}  // namespace byol::ops
