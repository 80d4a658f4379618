// Front ends of the optimizer ops (engine/optim_ops.h): the checks once for both backends, then the CPU
// loops (engine/cpu/optimizers.cpp) or, for buffers on a GPU, the CUDA launches
// (engine/cuda/optimizers_cuda.cpp).
#include <cmath>

#include "engine/cpu/optimizers.h"
#include "engine/cuda/optimizers_cuda.h"
#include "engine/ops/check.h"
#include "engine/optim_ops.h"

namespace byol::ops {
using namespace detail;

namespace {

// f32, contiguous, the numel and device of `ref` (numel at least that of `ref` when `prefix`).
void check_buffer(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref,
                  bool prefix = false) {
  check_defined(op, arg, t);
  check_contiguous(op, arg, t);
  BYOL_CHECK(t.dtype() == DType::f32, op, ": argument '", arg, "' expected an f32 buffer, got ",
             t.describe());
  BYOL_CHECK(prefix ? t.numel() >= ref.numel() : t.numel() == ref.numel(), op, ": argument '", arg, "' ",
             t.describe(), " expected ", prefix ? "at least " : "", "the ", ref.numel(), " elements of '",
             ref_arg, "' ", ref.describe());
  BYOL_CHECK(t.device() == ref.device(), op, ": argument '", arg, "' is on ", device_name(t.device()),
             " but '", ref_arg, "' is on ", device_name(ref.device()));
}

// The tensor form of a StepScalar: an f32 tensor of one element on the device of `ref`.
void check_step_scalar(const char* op, const char* arg, const StepScalar& s, const char* ref_arg,
                       const Tensor& ref) {
  if (!s.in_tensor()) {
    BYOL_CHECK(std::isfinite(s.value()), op, ": ", arg, " must be finite, got ", s.value());
    return;
  }
  const Tensor& t = s.tensor();
  BYOL_CHECK(t.dtype() == DType::f32 && t.numel() == 1 && t.is_contiguous(), op, ": argument '", arg,
             "' expected an f32 tensor of one element, got ", t.describe());
  BYOL_CHECK(t.device() == ref.device(), op, ": argument '", arg, "' is on ", device_name(t.device()),
             " but '", ref_arg, "' is on ", device_name(ref.device()));
}

// The float the update applies: the number rounded once, or the tensor's element (read on the host, so
// CPU tensors only).
float host_value(const StepScalar& s) {
  return s.in_tensor() ? *s.tensor().data<float>() : static_cast<float>(s.value());
}

// Where the CUDA kernels read the value from: the tensor's element, or nullptr for the number form.
const float* device_pointer(const StepScalar& s) {
  return s.in_tensor() ? s.tensor().data<float>() : nullptr;
}

}  // namespace

LarsLayout::LarsLayout(std::vector<Segment> segments, int64_t numel)
    : segments_(std::move(segments)), numel_(numel) {
  for (size_t s = 0; s < segments_.size(); ++s) {
    const Segment& g = segments_[s];
    BYOL_CHECK(
        0 <= g.begin && g.begin <= g.end && g.end <= numel && (s == 0 || segments_[s - 1].end <= g.begin),
        "LarsLayout: tensor ", s, " [", g.begin, ", ", g.end,
        ") is not sorted, disjoint and inside the buffer of ", numel, " elements");
  }
}

void ema_(const Tensor& target, const Tensor& online, const StepScalar& tau) {
  const char* op = "ema_";
  check_defined(op, "target", target);
  check_buffer(op, "target", target, "target", target);
  check_buffer(op, "online", online, "target", target, /*prefix=*/true);
  check_step_scalar(op, "tau", tau, "target", target);
  if (!target.device().is_cpu())
    return BYOL_ON_CUDA(op, target,
                        cuda::ema(target.data<float>(), online.data<float>(), target.numel(),
                                  static_cast<float>(tau.value()), device_pointer(tau)));
  cpu::ema(target.data<float>(), online.data<float>(), target.numel(), host_value(tau));
}

void lars_step_(const Tensor& w, const Tensor& g, const Tensor& m, const LarsLayout& layout,
                const LarsHyper& h, const Tensor& trust_out) {
  const char* op = "lars_step_";
  check_defined(op, "w", w);
  check_buffer(op, "w", w, "w", w);
  check_buffer(op, "g", g, "w", w);
  check_buffer(op, "m", m, "w", w);
  BYOL_CHECK(layout.numel() == w.numel(), op, ": the layout covers ", layout.numel(), " elements, 'w' has ",
             w.numel());
  check_defined(op, "trust_out", trust_out);
  BYOL_CHECK(trust_out.dtype() == DType::f64 &&
                 trust_out.numel() == static_cast<int64_t>(layout.segments().size()) &&
                 trust_out.device() == w.device() && trust_out.is_contiguous(),
             op, ": argument 'trust_out' expected a contiguous f64 [", layout.segments().size(), "] on ",
             device_name(w.device()), ", got ", trust_out.describe());
  check_step_scalar(op, "lr", h.lr, "w", w);
  if (!w.device().is_cpu())
    return BYOL_ON_CUDA(op, w,
                        cuda::lars_step(w.data<float>(), g.data<float>(), m.data<float>(), layout, h,
                                        device_pointer(h.lr), trust_out.data<double>()));
  LarsHyper on_host = h;
  on_host.lr = static_cast<double>(host_value(h.lr));
  cpu::lars_step(w.data<float>(), g.data<float>(), m.data<float>(), layout, on_host,
                 trust_out.data<double>());
}

void sgd_step_(const Tensor& w, const Tensor& m, const Tensor& g, double lr, double momentum,
               double weight_decay, bool nesterov) {
  const char* op = "sgd_step_";
  check_defined(op, "w", w);
  check_buffer(op, "w", w, "w", w);
  check_buffer(op, "m", m, "w", w);
  check_buffer(op, "g", g, "w", w);
  const float flr = static_cast<float>(lr), fmom = static_cast<float>(momentum),
              fwd = static_cast<float>(weight_decay);
  if (!w.device().is_cpu())
    return BYOL_ON_CUDA(op, w,
                        cuda::sgd_step(w.data<float>(), m.data<float>(), g.data<float>(), w.numel(), flr,
                                       fmom, fwd, nesterov));
  cpu::sgd_step(w.data<float>(), m.data<float>(), g.data<float>(), w.numel(), flr, fmom, fwd, nesterov);
}

void adamw_step_(const Tensor& w, const Tensor& m, const Tensor& v, const Tensor& g, const AdamWHyper& h) {
  const char* op = "adamw_step_";
  check_defined(op, "w", w);
  check_buffer(op, "w", w, "w", w);
  check_buffer(op, "m", m, "w", w);
  check_buffer(op, "v", v, "w", w);
  check_buffer(op, "g", g, "w", w);
  BYOL_CHECK(h.step >= 1, op, ": the step must be >= 1, got ", h.step);
  // The bias corrections are per step, computed in double on the host for both backends.
  const float bias1 = static_cast<float>(1.0 - std::pow(h.beta1, static_cast<double>(h.step)));
  const float bias2 = static_cast<float>(1.0 - std::pow(h.beta2, static_cast<double>(h.step)));
  const float lr = static_cast<float>(h.lr), beta1 = static_cast<float>(h.beta1),
              beta2 = static_cast<float>(h.beta2), eps = static_cast<float>(h.eps),
              wd = static_cast<float>(h.weight_decay);
  if (!w.device().is_cpu())
    return BYOL_ON_CUDA(op, w,
                        cuda::adamw_step(w.data<float>(), m.data<float>(), v.data<float>(), g.data<float>(),
                                         w.numel(), lr, beta1, beta2, eps, wd, bias1, bias2));
  cpu::adamw_step(w.data<float>(), m.data<float>(), v.data<float>(), g.data<float>(), w.numel(), lr, beta1,
                  beta2, eps, wd, bias1, bias2);
}

}  // namespace byol::ops
