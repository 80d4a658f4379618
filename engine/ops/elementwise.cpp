// Front ends of the elementwise ops, full reductions and batch-dimension shape ops.
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

namespace {

void check_float_input(const char* op, const char* arg, const Tensor& x) {
  check_floating(op, arg, x);
  check_contiguous(op, arg, x);
}

// relu and add also take bf16 activations (batch norm's fused ReLU, autograd's sums of gradients).
void check_activation_input(const char* op, const char* arg, const Tensor& x) {
  check_activation(op, arg, x);
  check_contiguous(op, arg, x);
}

// x * alpha into a new tensor (scale's forward and backward).
Tensor scaled(const char* op, const Tensor& x, double alpha) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  on_backend(
      op, x,
      [&](auto tag) { cpu::scale(x.data<decltype(tag)>(), alpha, y.data<decltype(tag)>(), x.numel()); },
      [&] { BYOL_ON_CUDA(op, x, cuda::scale(x.data<float>(), alpha, y.data<float>(), x.numel())); });
  return y;
}

// factor * sum(x) as a [] tensor, and its backward: every element of the input gets factor * g (g stays on
// the device on a GPU).
Tensor scaled_sum(const char* op, const Tensor& x, double factor) {
  Tensor y = Tensor::empty({}, x.dtype(), x.device());
  on_backend(
      op, x, [&](auto tag) { cpu::sum(x.data<decltype(tag)>(), x.numel(), factor, y.data<decltype(tag)>()); },
      [&] { BYOL_ON_CUDA(op, x, cuda::sum(x.data<float>(), x.numel(), factor, y.data<float>())); });
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(y, [op, shape = x.shape(), factor](const Tensor& g_in) {
      const Tensor g = g_in.contiguous();
      Tensor dx = Tensor::empty(shape, g.dtype(), g.device());
      on_backend(
          op, g,
          [&](auto tag) {
            using T = decltype(tag);
            cpu::fill_from_scalar(dx.data<T>(), g.data<T>(), factor, dx.numel());
          },
          [&] {
            BYOL_ON_CUDA(op, g,
                         cuda::fill_from_scalar(dx.data<float>(), g.data<float>(), factor, dx.numel()));
          });
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace

Tensor detail::relu_grad(const char* op, const Tensor& y, const Tensor& dy) {
  BYOL_CHECK(dy.dtype() == y.dtype() && dy.shape() == y.shape(), op, ": the gradient ", dy.describe(),
             " does not match the output ", y.describe());
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  on_backend_act(
      op, y,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::relu_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel());
      },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, y, cuda::relu_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel()));
      });
  return dx;
}

Tensor relu(const Tensor& x) {
  const char* op = "relu";
  check_activation_input(op, "input", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  on_backend_act(
      op, x,
      [&](auto tag) { cpu::relu_forward(x.data<decltype(tag)>(), y.data<decltype(tag)>(), x.numel()); },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, x, cuda::relu_forward(x.data<T>(), y.data<T>(), x.numel()));
      });
  GradRecorder rec(op, {x});
  if (rec.active()) {
    // Save the output through a plain view: capturing y itself would make y's node own y.
    rec.record(y, [op, ys = y.view(y.shape())](const Tensor& dy_in) {
      return std::vector<Tensor>{relu_grad(op, ys, dy_in.contiguous())};
    });
  }
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  const char* op = "add";
  check_activation_input(op, "a", a);
  check_defined(op, "b", b);
  BYOL_CHECK(b.shape() == a.shape(), op, ": argument 'b' expected shape ", shape_str(a.shape()),
             " (that of 'a'; add does not broadcast), got ", b.describe());
  check_like(op, "b", b, "a", a);
  check_contiguous(op, "b", b);
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  on_backend_act(
      op, a,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::add(a.data<T>(), b.data<T>(), y.data<T>(), a.numel());
      },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, a, cuda::add(a.data<T>(), b.data<T>(), y.data<T>(), a.numel()));
      });
  GradRecorder rec(op, {a, b});
  if (rec.active()) {
    rec.record(y, [](const Tensor& dy) { return std::vector<Tensor>{dy, dy}; });
  }
  return y;
}

Tensor cast(const Tensor& x, DType dtype) {
  const char* op = "cast";
  check_activation(op, "input", x);
  BYOL_CHECK(is_floating(dtype), op, ": argument 'dtype' expected f32, f64 or bf16, got ", dtype_name(dtype));
  if (dtype == x.dtype()) return x;
  Tensor y = x.to(dtype);
  GradRecorder rec(op, {x});
  if (rec.active()) {
    // The gradient goes back in the input's dtype (to bf16: rounded to nearest even).
    rec.record(y, [from = x.dtype()](const Tensor& dy) { return std::vector<Tensor>{dy.to(from)}; });
  }
  return y;
}

Tensor scale(const Tensor& x, double alpha) {
  const char* op = "scale";
  check_float_input(op, "input", x);
  Tensor y = scaled(op, x, alpha);
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(
        y, [op, alpha](const Tensor& dy) { return std::vector<Tensor>{scaled(op, dy.contiguous(), alpha)}; });
  }
  return y;
}

Tensor sum(const Tensor& x) {
  const char* op = "sum";
  check_float_input(op, "input", x);
  return scaled_sum(op, x, 1.0);
}

Tensor mean(const Tensor& x) {
  const char* op = "mean";
  check_float_input(op, "input", x);
  BYOL_CHECK(x.numel() > 0, op, ": the mean of an empty tensor is undefined, got ", x.describe());
  return scaled_sum(op, x, 1.0 / static_cast<double>(x.numel()));
}

Tensor concat(const std::vector<Tensor>& parts) {
  const char* op = "concat";
  BYOL_CHECK(!parts.empty(), op, ": expected at least one tensor");
  const Tensor& first = parts[0];
  check_defined(op, "parts[0]", first);
  BYOL_CHECK(first.dim() >= 1, op, ": argument 'parts[0]' expected at least one dimension, got ",
             first.describe());
  // Device-neutral below (slice_rows + copy_), so concat runs on a GPU as it is.
  if (!first.device().is_cpu()) BYOL_ON_CUDA(op, first, (void)0);
  Shape shape = first.shape();
  shape[0] = 0;
  std::vector<int64_t> rows;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string arg = cat("parts[", i, "]");
    check_like(op, arg.c_str(), parts[i], "parts[0]", first);
    check_contiguous(op, arg.c_str(), parts[i]);
    Shape rest = parts[i].shape(), rest0 = first.shape();
    BYOL_CHECK(rest.size() == rest0.size() && std::equal(rest.begin() + 1, rest.end(), rest0.begin() + 1), op,
               ": argument '", arg, "' expected the shape of 'parts[0]' ", first.describe(),
               " in every dimension but the first, got ", parts[i].describe());
    rows.push_back(parts[i].size(0));
    shape[0] += parts[i].size(0);
  }
  Tensor y = Tensor::empty(shape, first.dtype(), first.device());
  int64_t at = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    y.slice_rows(at, at + rows[i]).copy_(parts[i]);
    at += rows[i];
  }
  GradRecorder rec(op, parts);
  if (rec.active()) {
    std::vector<bool> need(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) need[i] = rec.needs(i);
    rec.record(y, [rows, need](const Tensor& dy_in) {
      Tensor dy = dy_in.contiguous();
      std::vector<Tensor> grads(rows.size());
      int64_t start = 0;
      for (size_t i = 0; i < rows.size(); ++i) {
        if (need[i]) grads[i] = dy.slice_rows(start, start + rows[i]);
        start += rows[i];
      }
      return grads;
    });
  }
  return y;
}

Tensor slice(const Tensor& x, int64_t start, int64_t end) {
  const char* op = "slice";
  check_defined(op, "input", x);
  BYOL_CHECK(x.dim() >= 1, op, ": argument 'input' expected at least one dimension, got ", x.describe());
  BYOL_CHECK(0 <= start && start <= end && end <= x.size(0), op, ": rows [", start, ", ", end,
             ") out of range for ", x.describe());
  Tensor y = x.slice_rows(start, end);
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(y, [shape = x.shape(), dtype = x.dtype(), device = x.device(), start, end](const Tensor& dy) {
      Tensor dx = Tensor::zeros(shape, dtype, device);
      dx.slice_rows(start, end).copy_(dy);
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

Tensor all_gather_rows(const Tensor& x, int64_t rank, int64_t world, const StatsAllReduce& sum) {
  const char* op = "all_gather_rows";
  check_defined(op, "input", x);
  check_contiguous(op, "input", x);
  BYOL_CHECK(x.dim() >= 1, op, ": argument 'input' expected at least one dimension, got ", x.describe());
  BYOL_CHECK(world >= 1 && 0 <= rank && rank < world, op, ": expected 0 <= rank < world, got rank ", rank,
             " of world ", world);
  if (world == 1) return x;
  BYOL_CHECK(static_cast<bool>(sum), op, ": world ", world, " needs a cross-rank sum");
  // Device-neutral (zeros, slice_rows, copy_ and the communicator's sum), so it runs on a GPU as it is.
  const int64_t n = x.size(0);
  Shape shape = x.shape();
  shape[0] = world * n;
  Tensor y = Tensor::zeros(shape, x.dtype(), x.device());
  y.slice_rows(rank * n, (rank + 1) * n).copy_(x);
  sum(y);
  GradRecorder rec(op, {x});
  if (rec.active()) {
    rec.record(y, [rank, n, sum](const Tensor& dy) {
      Tensor total = dy.contiguous();
      if (total.impl() == dy.impl()) total = total.clone();  // never sum the caller's gradient in place
      sum(total);
      return std::vector<Tensor>{total.slice_rows(rank * n, (rank + 1) * n)};
    });
  }
  return y;
}

void add_(Tensor& dst, const Tensor& src) {
  const char* op = "add_";
  check_activation_input(op, "dst", dst);
  check_defined(op, "src", src);
  BYOL_CHECK(src.shape() == dst.shape(), op, ": argument 'src' expected shape ", shape_str(dst.shape()),
             " (that of 'dst'), got ", src.describe());
  check_like(op, "src", src, "dst", dst);
  const Tensor s = src.contiguous();
  on_backend_act(
      op, dst,
      [&](auto tag) {
        using T = decltype(tag);
        cpu::add_inplace(dst.data<T>(), s.data<T>(), dst.numel());
      },
      [&](auto tag) {
        using T = decltype(tag);
        BYOL_ON_CUDA(op, dst, cuda::add_inplace(dst.data<T>(), s.data<T>(), dst.numel()));
      });
}

}  // namespace byol::ops
