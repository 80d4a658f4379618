// Front ends of linear and matmul: argument checks, dispatch, autograd records.
#include <type_traits>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/blas.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, LinearParams prm) {
  const char* op = "linear";
  check_rank(op, "input", x, 2, "[N, in]");
  check_rank(op, "weight", w, 2, "[out, in]");
  check_floating(op, "input", x);
  check_like(op, "weight", w, "input", x);
  check_contiguous(op, "input", x);
  check_contiguous(op, "weight", w);
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  BYOL_CHECK(w.size(1) == in, op, ": argument 'weight' expected [out, in] with in = ", in,
             " (the input's features), got ", w.describe());
  if (b.defined()) {
    check_shape(op, "bias", b, {out}, "one per output feature");
    check_like(op, "bias", b, "input", x);
    check_contiguous(op, "bias", b);
  }
  check_bf16_products(op, x, prm.bf16);
  const bool bf16 = prm.bf16;
  Tensor y = Tensor::empty({N, out}, x.dtype(), x.device());
  on_backend(
      op, x,
      [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, float>) {
          if (bf16)
            return cpu::linear_forward_bf16(x.data<float>(), w.data<float>(), data_or_null<float>(b),
                                            y.data<float>(), N, in, out);
        }
        cpu::linear_forward(x.data<T>(), w.data<T>(), data_or_null<T>(b), y.data<T>(), N, in, out);
      },
      [&] {
        BYOL_ON_CUDA(op, x,
                     cuda::linear_forward(x.data<float>(), w.data<float>(), data_or_null<float>(b),
                                          y.data<float>(), N, in, out));
      });
  GradRecorder rec(op, {x, w, b});
  if (rec.active()) {
    const bool need_dx = rec.needs(0), need_dw = rec.needs(1), need_db = rec.needs(2);
    rec.record(y, [op, xs = need_dw ? x : Tensor(), ws = need_dx ? w : Tensor(), N, in, out, need_dx, need_dw,
                   need_db, bf16](const Tensor& dy_in) {
      const Tensor dy = dy_in.contiguous();
      Tensor dx, dw, db;
      if (need_dx) dx = Tensor::empty({N, in}, dy.dtype(), dy.device());
      if (need_dw) dw = Tensor::empty({out, in}, dy.dtype(), dy.device());
      if (need_db) db = Tensor::empty({out}, dy.dtype(), dy.device());
      on_backend(
          op, dy,
          [&](auto tag) {
            using T = decltype(tag);
            if constexpr (std::is_same_v<T, float>) {
              if (bf16)
                return cpu::linear_backward_bf16(
                    dy.data<float>(), data_or_null<float>(xs), data_or_null<float>(ws),
                    data_or_null<float>(dx), data_or_null<float>(dw), data_or_null<float>(db), N, in, out);
            }
            cpu::linear_backward(dy.data<T>(), data_or_null<T>(xs), data_or_null<T>(ws), data_or_null<T>(dx),
                                 data_or_null<T>(dw), data_or_null<T>(db), N, in, out);
          },
          [&] {
            BYOL_ON_CUDA(op, dy,
                         cuda::linear_backward(dy.data<float>(), data_or_null<float>(xs),
                                               data_or_null<float>(ws), data_or_null<float>(dx),
                                               data_or_null<float>(dw), data_or_null<float>(db), N, in, out));
          });
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  const char* op = "matmul";
  check_rank(op, "a", a, 2, "[M, K]");
  check_rank(op, "b", b, 2, "[K, N]");
  check_floating(op, "a", a);
  check_like(op, "b", b, "a", a);
  check_contiguous(op, "a", a);
  check_contiguous(op, "b", b);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  BYOL_CHECK(b.size(0) == K, op, ": argument 'b' expected [K, N] with K = ", K, " (the columns of 'a' ",
             a.describe(), "), got ", b.describe());
  Tensor c = Tensor::empty({M, N}, a.dtype(), a.device());
  on_backend(
      op, a,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::matmul(a.data<T>(), b.data<T>(), c.data<T>(), M, K, N, false, false);
      },
      [&] {
        BYOL_ON_CUDA(op, a,
                     cuda::gemm(a.data<float>(), b.data<float>(), c.data<float>(), M, K, N, false, false));
      });
  GradRecorder rec(op, {a, b});
  if (rec.active()) {
    const bool need_a = rec.needs(0), need_b = rec.needs(1);
    rec.record(c, [op, as = need_b ? a : Tensor(), bs = need_a ? b : Tensor(), M, K, N, need_a,
                   need_b](const Tensor& dc_in) {
      const Tensor dc = dc_in.contiguous();
      Tensor da, db;
      if (need_a) da = Tensor::empty({M, K}, dc.dtype(), dc.device());  // da[M, K] = dc[M, N] b[K, N]^T
      if (need_b) db = Tensor::empty({K, N}, dc.dtype(), dc.device());  // db[K, N] = a[M, K]^T dc[M, N]
      on_backend(
          op, dc,
          [&](auto tag) {
            using T = decltype(tag);
            if (need_a) cpu::matmul(dc.data<T>(), bs.data<T>(), da.data<T>(), M, N, K, false, true);
            if (need_b) cpu::matmul(as.data<T>(), dc.data<T>(), db.data<T>(), K, M, N, true, false);
          },
          [&] {
            if (need_a)
              BYOL_ON_CUDA(
                  op, dc,
                  cuda::gemm(dc.data<float>(), bs.data<float>(), da.data<float>(), M, N, K, false, true));
            if (need_b)
              BYOL_ON_CUDA(
                  op, dc,
                  cuda::gemm(as.data<float>(), dc.data<float>(), db.data<float>(), K, M, N, true, false));
          });
      return std::vector<Tensor>{da, db};
    });
  }
  return c;
}

}  // namespace byol::ops
