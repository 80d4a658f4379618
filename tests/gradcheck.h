// Finite-difference gradient checking in float64.
//
// The checked function maps the inputs to an output of any shape; the scalar compared is
// L = sum(output * R) for a fixed random R, so every output element matters. Analytic gradients come
// from one backward pass seeded with R; numeric ones from central differences with step eps.
// An element passes when |analytic - numeric| <= tol * max(|analytic|, |numeric|, 1).
// Kinks (relu at 0, a max pool's tie): when the two one-sided differences disagree, the step crossed
// a point where the function is not differentiable, and the element is stepped around (not compared);
// at most max_kink_fraction of the elements may be skipped that way.
#pragma once

#include <catch2/catch.hpp>
#include <functional>
#include <random>
#include <vector>

#include "engine/autograd.h"

namespace byol::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double tol = 1e-6;
  double max_kink_fraction = 0.02;
};

struct GradcheckReport {
  int64_t checked = 0;
  int64_t kinks = 0;
  double worst = 0;  // largest |a - n| / max(|a|, |n|, 1)
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Tensor& out, const Tensor& r) {
  const double* o = out.data<double>();
  const double* w = r.data<double>();
  double s = 0;
  for (int64_t i = 0; i < out.numel(); ++i) s += o[i] * w[i];
  return s;
}

// Checks the gradients of every f64 input (integer inputs, e.g. labels, are passed through).
inline GradcheckReport gradcheck(const OpFn& fn, std::vector<Tensor> inputs, std::mt19937_64& gen,
                                 const GradcheckOptions& opt = {}) {
  for (Tensor& t : inputs)
    if (t.defined() && t.dtype() == DType::f64) t.set_requires_grad(true);
  Tensor out = fn(inputs);
  REQUIRE(out.dtype() == DType::f64);
  Tensor r = Tensor::randn(out.shape(), gen, DType::f64);
  out.backward(r);

  GradcheckReport rep;
  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor& x = inputs[i];
    if (!x.defined() || x.dtype() != DType::f64) continue;
    Tensor analytic = x.grad();
    REQUIRE(analytic.defined());
    double* v = x.data<double>();
    const double* a = analytic.data<double>();
    const double f0 = weighted_sum(fn(inputs), r);
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double keep = v[j];
      v[j] = keep + opt.eps;
      const double fp = weighted_sum(fn(inputs), r);
      v[j] = keep - opt.eps;
      const double fm = weighted_sum(fn(inputs), r);
      v[j] = keep;
      const double right = (fp - f0) / opt.eps, left = (f0 - fm) / opt.eps;
      const double scale = std::max({std::abs(right), std::abs(left), 1.0});
      if (std::abs(right - left) > 1e-3 * scale) {
        ++rep.kinks;
        continue;
      }
      const double numeric = (fp - fm) / (2 * opt.eps);
      const double err = std::abs(a[j] - numeric) / std::max({std::abs(a[j]), std::abs(numeric), 1.0});
      rep.worst = std::max(rep.worst, err);
      ++rep.checked;
      if (err > opt.tol) {
        INFO("input " << i << " (" << x.describe() << ") element " << j << ": analytic " << a[j]
                      << " numeric " << numeric);
        CHECK(err <= opt.tol);
      }
    }
  }
  CHECK(rep.checked > 0);
  CHECK(rep.kinks <= opt.max_kink_fraction * (rep.checked + rep.kinks));
  return rep;
}

// Distinct values in [-1, 1], each at least d = 1/(n+1) away from 0 and from every other value, in
// random order: relu and max pool are differentiable at every one of them for steps below d.
inline Tensor away_from_kinks(const Shape& shape, std::mt19937_64& gen) {
  Tensor t = Tensor::empty(shape, DType::f64);
  const int64_t n = t.numel();
  const double d = 1.0 / static_cast<double>(n + 1);
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i + 1) * d * (i % 2 ? 1.0 : -1.0);
  std::shuffle(v.begin(), v.end(), gen);
  std::copy(v.begin(), v.end(), t.data<double>());
  return t;
}

}  // namespace byol::testing
