// Forward values against independent naive loops written here, and the properties the design names:
// batch norm gives per-channel mean 0 / variance 1, normalised rows have norm 1, the BYOL loss is 0 for
// identical directions and 4 per term for opposite ones, synced batch norm over two halves equals
// batch norm over the whole batch.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "engine/ops.h"

using namespace byol;

namespace {
std::mt19937_64& rng() {
  static std::mt19937_64 gen(7);
  return gen;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto va = a.to(DType::f64).to_vector<double>(), vb = b.to(DType::f64).to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i)
    worst = std::max(worst, std::abs(va[i] - vb[i]) / std::max({std::abs(va[i]), std::abs(vb[i]), 1.0}));
  return worst;
}

// Direct convolution, the definition: y[n,p,q,k] = sum_{r,s,c} x[n, p*st-pad+r, q*st-pad+s, c] w[k,r,s,c].
Tensor naive_conv(const Tensor& x, const Tensor& w, int st, int pad) {
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), K = w.size(0), R = w.size(1),
                S = w.size(2);
  const int64_t P = (H + 2 * pad - R) / st + 1, Q = (W + 2 * pad - S) / st + 1;
  Tensor y = Tensor::zeros({N, P, Q, K}, DType::f64);
  const double* xp = x.data<double>();
  const double* wp = w.data<double>();
  double* yp = y.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          double acc = 0;
          for (int64_t r = 0; r < R; ++r)
            for (int64_t s = 0; s < S; ++s)
              for (int64_t c = 0; c < C; ++c) {
                const int64_t h = p * st - pad + r, ww = q * st - pad + s;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += xp[((n * H + h) * W + ww) * C + c] * wp[((k * R + r) * S + s) * C + c];
              }
          yp[((n * P + p) * Q + q) * K + k] = acc;
        }
  return y;
}
}  // namespace

TEST_CASE("products over an empty inner dimension are zeros, plus the bias", "[dense]") {
  CHECK(ops::matmul(Tensor::zeros({3, 0}), Tensor::zeros({0, 4})).to_vector<float>() ==
        std::vector<float>(12, 0.0f));
  const Tensor y = ops::linear(Tensor::zeros({5, 0}), Tensor::zeros({2, 0}), Tensor::full({2}, 1.5));
  CHECK(y.shape() == Shape{5, 2});
  CHECK(y.to_vector<float>() == std::vector<float>(10, 1.5f));
}

TEST_CASE("conv2d matches the direct definition; f32 agrees with f64", "[conv]") {
  struct Case {
    int64_t n, h, w, c, k, r, s;
    int st, pad;
  };
  for (Case c : {Case{2, 9, 7, 3, 5, 3, 3, 1, 1}, Case{3, 8, 8, 4, 6, 3, 3, 2, 1},
                 Case{2, 5, 5, 7, 3, 1, 1, 1, 0}, Case{2, 6, 6, 5, 4, 1, 1, 2, 0},
                 Case{1, 12, 11, 3, 4, 7, 7, 2, 3}, Case{20, 6, 6, 3, 2, 3, 3, 1, 1}}) {
    INFO("case h " << c.h << " w " << c.w << " c " << c.c << " k " << c.k << " r " << c.r << " stride "
                   << c.st);
    Tensor x = Tensor::randn({c.n, c.h, c.w, c.c}, rng(), DType::f64);
    Tensor w = Tensor::randn({c.k, c.r, c.s, c.c}, rng(), DType::f64);
    Tensor ref = naive_conv(x, w, c.st, c.pad);
    CHECK(max_rel_diff(ops::conv2d(x, w, {c.st, c.pad}), ref) < 1e-12);
    CHECK(max_rel_diff(ops::conv2d(x.to(DType::f32), w.to(DType::f32), {c.st, c.pad}), ref) < 1e-5);
  }
}

TEST_CASE("max_pool2d and global_avg_pool match naive loops", "[pool]") {
  const int64_t N = 2, H = 7, W = 6, C = 3;
  Tensor x = Tensor::randn({N, H, W, C}, rng(), DType::f64);
  Tensor y = ops::max_pool2d(x, 3, 2, 1);
  REQUIRE(y.shape() == Shape{N, 4, 3, C});
  const double* xp = x.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < 4; ++p)
      for (int64_t q = 0; q < 3; ++q)
        for (int64_t c = 0; c < C; ++c) {
          double m = -INFINITY;
          for (int64_t h = p * 2 - 1; h <= p * 2 + 1; ++h)
            for (int64_t w = q * 2 - 1; w <= q * 2 + 1; ++w)
              if (h >= 0 && h < H && w >= 0 && w < W) m = std::max(m, xp[((n * H + h) * W + w) * C + c]);
          CHECK(y.data<double>()[((n * 4 + p) * 3 + q) * C + c] == m);
        }
  Tensor g = ops::global_avg_pool(x);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t i = 0; i < H * W; ++i) s += xp[(n * H * W + i) * C + c];
      CHECK(g.data<double>()[n * C + c] == Approx(s / (H * W)).epsilon(1e-12));
    }
}

TEST_CASE("max_pool2d: the first maximum of a window wins ties, NaN propagates, the gradient goes to the winner",
          "[pool]") {
  // Values on a coarse grid (many ties, as after a ReLU), a few NaNs; every storage type. The reference
  // scans each window's valid taps row by row and keeps the first strict maximum, or the first NaN.
  const int64_t N = 3, H = 9, W = 8, C = 19, P = 5, Q = 4;
  std::uniform_int_distribution<int> level(-2, 2);
  std::vector<double> values(N * H * W * C);
  for (double& v : values) v = std::max(0, level(rng()));
  for (int64_t i : {5, 200, 201, 777, 1500}) values[i] = NAN;
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    INFO("dtype " << dtype_name(dt));
    Tensor x = ops::cast(Tensor::from_vector(values, {N, H, W, C}), dt).set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 3, 2, 1);
    REQUIRE(y.shape() == Shape{N, P, Q, C});
    std::vector<double> dy_values(N * P * Q * C);
    for (size_t i = 0; i < dy_values.size(); ++i) dy_values[i] = static_cast<double>(i % 7 + 1);
    y.backward(ops::cast(Tensor::from_vector(dy_values, {N, P, Q, C}), dt));
    const std::vector<double> yv = y.to(DType::f64).to_vector<double>();
    const std::vector<double> dx = x.grad().to(DType::f64).to_vector<double>();
    std::vector<double> dx_ref(values.size(), 0.0);
    int mismatches = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q)
          for (int64_t c = 0; c < C; ++c) {
            int64_t win = -1;
            for (int64_t h = p * 2 - 1; h <= p * 2 + 1; ++h)
              for (int64_t w = q * 2 - 1; w <= q * 2 + 1; ++w) {
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                const int64_t i = ((n * H + h) * W + w) * C + c;
                const bool best_nan = win >= 0 && std::isnan(values[win]);
                if (win < 0 || (!best_nan && (values[i] > values[win] || std::isnan(values[i])))) win = i;
              }
            const int64_t o = ((n * P + p) * Q + q) * C + c;
            dx_ref[win] += dy_values[o];
            const bool same = std::isnan(values[win]) ? std::isnan(yv[o]) : yv[o] == values[win];
            mismatches += same ? 0 : 1;
          }
    CHECK(mismatches == 0);
    int grad_mismatches = 0;
    for (size_t i = 0; i < dx.size(); ++i) grad_mismatches += dx[i] == dx_ref[i] ? 0 : 1;
    CHECK(grad_mismatches == 0);
  }
}

TEST_CASE("batch_norm output has per-channel mean 0 and variance 1", "[bn]") {
  for (Shape shape : {Shape{4, 5, 3, 6}, Shape{32, 10}}) {
    const int64_t C = shape.back();
    Tensor x = Tensor::randn(shape, rng(), DType::f32, 3.0, 2.5);  // offset mean: tests cancellation
    Tensor y = ops::batch_norm(x, Tensor::full({C}, 1.0), Tensor::zeros({C}), Tensor(), Tensor(), {});
    const int64_t M = x.numel() / C;
    for (int64_t c = 0; c < C; ++c) {
      double s = 0, ss = 0;
      for (int64_t m = 0; m < M; ++m) {
        const double v = y.data<float>()[m * C + c];
        s += v;
        ss += v * v;
      }
      const double mean = s / M, var = ss / M - mean * mean;
      CHECK(std::abs(mean) < 1e-5);
      // biased variance of the output is var / (var + eps) of the input's
      CHECK(var == Approx(1.0).epsilon(1e-4));
    }
  }
}

TEST_CASE("batch_norm updates running statistics with decay and evaluates with them", "[bn]") {
  const int64_t M = 24, C = 3;
  Tensor x = Tensor::randn({M, C}, rng(), DType::f64, 1.0, 2.0);
  Tensor gamma = Tensor::randn({C}, rng(), DType::f64), beta = Tensor::randn({C}, rng(), DType::f64);
  Tensor rm = Tensor::from_vector<double>({0.5, -1.0, 2.0}, {C});
  Tensor rv = Tensor::from_vector<double>({1.5, 0.7, 3.0}, {C});
  std::vector<double> rm0 = rm.to_vector<double>(), rv0 = rv.to_vector<double>();
  ops::BatchNormOptions opt;  // decay 0.9, eps 1e-5
  Tensor y = ops::batch_norm(x, gamma, beta, rm, rv, opt);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t m = 0; m < M; ++m) s += x.data<double>()[m * C + c];
    const double mean = s / M;
    double v = 0;
    for (int64_t m = 0; m < M; ++m) v += std::pow(x.data<double>()[m * C + c] - mean, 2);
    v /= M;  // biased, as the official code's Haiku BatchNorm
    CHECK(rm.data<double>()[c] == Approx(0.9 * rm0[c] + 0.1 * mean).epsilon(1e-12));
    CHECK(rv.data<double>()[c] == Approx(0.9 * rv0[c] + 0.1 * v).epsilon(1e-12));
    for (int64_t m = 0; m < M; ++m) {
      const double want =
          (x.data<double>()[m * C + c] - mean) / std::sqrt(v + 1e-5) * gamma.data<double>()[c] +
          beta.data<double>()[c];
      CHECK(y.data<double>()[m * C + c] == Approx(want).epsilon(1e-10).margin(1e-12));
    }
  }
  opt.training = false;
  std::vector<double> rm1 = rm.to_vector<double>(), rv1 = rv.to_vector<double>();
  Tensor ye = ops::batch_norm(x, gamma, beta, rm, rv, opt);
  CHECK(rm.to_vector<double>() == rm1);  // evaluation leaves the statistics alone
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) {
      const double want =
          (x.data<double>()[m * C + c] - rm1[c]) / std::sqrt(rv1[c] + 1e-5) * gamma.data<double>()[c] +
          beta.data<double>()[c];
      CHECK(ye.data<double>()[m * C + c] == Approx(want).epsilon(1e-12));
    }
}

TEST_CASE("batch_norm with an all-reduce hook over two halves equals the whole batch", "[bn][sync]") {
  // Two simulated ranks each hold half the batch. Their hooks add the other half's partial sums, as an
  // all-reduce would; outputs and input gradients must equal those of one batch norm over everything.
  const int64_t M = 10, C = 4;
  Tensor x = Tensor::randn({M, C}, rng(), DType::f64, 0.5, 1.5);
  Tensor seed = Tensor::randn({M, C}, rng(), DType::f64);
  Tensor gamma = Tensor::randn({C}, rng(), DType::f64), beta = Tensor::randn({C}, rng(), DType::f64);

  Tensor xf = x.clone().set_requires_grad(true);
  Tensor yf = ops::batch_norm(xf, gamma, beta, Tensor(), Tensor(), {});
  yf.backward(seed);

  // A real all-reduce exchanges the sums in one step; here each "rank" runs three times: (A) to get its
  // forward sums, (B) to get its backward sums (which depend on the synced forward statistics), and
  // (C) with hooks that add the other rank's sums of both kinds.
  auto half = [&](const Tensor& t, int r) { return t.slice_rows(r * M / 2, (r + 1) * M / 2).clone(); };
  std::vector<Tensor> fwd(2), bwd(2);
  auto run = [&](int r, const ops::StatsAllReduce& hook) {
    Tensor xr = half(x, r).set_requires_grad(true);
    ops::BatchNormOptions opt;
    opt.all_reduce = hook;
    Tensor yr = ops::batch_norm(xr, gamma, beta, Tensor(), Tensor(), opt);
    yr.backward(half(seed, r));
    return std::pair{yr, xr.grad()};
  };
  auto is_fwd = [&](const Tensor& s) { return s.numel() == 2 * C + 1; };
  for (int r = 0; r < 2; ++r)  // (A)
    run(r, [&, r](Tensor& s) {
      if (is_fwd(s)) fwd[r] = s.clone();
    });
  for (int r = 0; r < 2; ++r)  // (B)
    run(r, [&, r](Tensor& s) {
      if (is_fwd(s)) {
        ops::add_(s, fwd[1 - r]);
      } else {
        bwd[r] = s.clone();
      }
    });
  for (int r = 0; r < 2; ++r) {  // (C)
    auto [yr, dxr] = run(r, [&, r](Tensor& s) { ops::add_(s, is_fwd(s) ? fwd[1 - r] : bwd[1 - r]); });
    CHECK(max_rel_diff(yr, yf.slice_rows(r * M / 2, (r + 1) * M / 2).contiguous()) < 1e-12);
    CHECK(max_rel_diff(dxr, xf.grad().slice_rows(r * M / 2, (r + 1) * M / 2).contiguous()) < 1e-12);
  }
}

TEST_CASE("batch_norm in groups equals one call per group (forward, running statistics, backward)",
          "[bn][groups]") {
  // BYOL's two views in one pass: groups = 2 over [v1; v2] must give what two calls give, with the running
  // statistics updated by group 1 then group 2, dgamma / dbeta summed, and the hook called once per pass
  // with every group's sums.
  for (Shape shape : {Shape{6, 3, 2, 4}, Shape{12, 5}}) {
    for (int64_t groups : {2, 3}) {
      INFO("x " << shape[0] << " rows, groups " << groups);
      const int64_t C = shape.back(), n = shape[0] / groups;
      Tensor x = Tensor::randn(shape, rng(), DType::f64), dy = Tensor::randn(shape, rng(), DType::f64);
      Tensor gamma = Tensor::randn({C}, rng(), DType::f64), beta = Tensor::randn({C}, rng(), DType::f64);
      auto leaf = [](const Tensor& t) {
        Tensor c = t.clone();
        c.set_requires_grad(true);
        return c;
      };
      Tensor rm_a = Tensor::randn({C}, rng(), DType::f64), rv_a = Tensor::full({C}, 1.5, DType::f64);
      Tensor rm_b = rm_a.clone(), rv_b = rv_a.clone();

      Tensor xa = leaf(x), ga = leaf(gamma), ba = leaf(beta);
      ops::BatchNormOptions opt;
      opt.groups = groups;
      int hook_calls = 0;
      int64_t hook_values = 0;
      opt.all_reduce = [&](Tensor& sums) {
        ++hook_calls;
        hook_values = sums.numel();
      };
      Tensor ya = ops::batch_norm(xa, ga, ba, rm_a, rv_a, opt);
      CHECK(hook_calls == 1);
      CHECK(hook_values == groups * (2 * C + 1));
      ya.backward(dy);

      Tensor xb = leaf(x), gb = leaf(gamma), bb = leaf(beta);
      std::vector<Tensor> parts;
      for (int64_t g = 0; g < groups; ++g)
        parts.push_back(ops::batch_norm(ops::slice(xb, g * n, (g + 1) * n), gb, bb, rm_b, rv_b, {}));
      Tensor yb = ops::concat(parts);
      yb.backward(dy);

      CHECK(max_rel_diff(ya, yb) < 1e-12);
      CHECK(max_rel_diff(rm_a, rm_b) < 1e-12);
      CHECK(max_rel_diff(rv_a, rv_b) < 1e-12);
      CHECK(max_rel_diff(xa.grad(), xb.grad()) < 1e-12);
      CHECK(max_rel_diff(ga.grad(), gb.grad()) < 1e-12);
      CHECK(max_rel_diff(ba.grad(), bb.grad()) < 1e-12);
      CHECK(hook_calls == 2);  // the backward pass: once more, for all groups
      CHECK(hook_values == groups * 2 * C);
    }
  }
  Tensor x = Tensor::randn({5, 3}, rng(), DType::f64), g = Tensor::full({3}, 1.0, DType::f64);
  ops::BatchNormOptions opt;
  opt.groups = 2;
  CHECK_THROWS_WITH(ops::batch_norm(x, g, g, Tensor(), Tensor(), opt), Catch::Contains("'groups' (2)"));
}

TEST_CASE("batch_norm_relu is relu(batch_norm(x) + residual) to the bit: forward, statistics, backward",
          "[bn][fused]") {
  // The fused op must give the bits of the three ops it replaces in ResNet's blocks (f32, as training
  // runs), in training and evaluation mode, in groups, with and without the residual; the hook sees the
  // same sums.
  for (bool training : {true, false}) {
    for (bool with_residual : {true, false}) {
      for (Shape shape : {Shape{4, 5, 3, 8}, Shape{6, 16}}) {
        INFO((training ? "training" : "evaluation")
             << (with_residual ? ", residual" : ", no residual") << ", " << shape[0] << " rows");
        const int64_t C = shape.back();
        const Tensor x = Tensor::randn(shape, rng()), dy = Tensor::randn(shape, rng());
        const Tensor r = Tensor::randn(shape, rng()), gamma = Tensor::randn({C}, rng()),
                     beta = Tensor::randn({C}, rng());
        auto leaf = [](const Tensor& t) {
          Tensor c = t.clone();
          c.set_requires_grad(true);
          return c;
        };
        Tensor rm_a = Tensor::randn({C}, rng()), rv_a = Tensor::full({C}, 1.5);
        Tensor rm_b = rm_a.clone(), rv_b = rv_a.clone();
        std::vector<std::vector<double>> hook_a, hook_b;
        ops::BatchNormOptions opt;
        opt.training = training;
        opt.groups = 2;
        opt.all_reduce = [&](Tensor& sums) { hook_a.push_back(sums.to_vector<double>()); };
        Tensor xa = leaf(x), ga = leaf(gamma), ba = leaf(beta), ra = leaf(r);
        Tensor ya = ops::batch_norm_relu(xa, ga, ba, rm_a, rv_a, opt, with_residual ? ra : Tensor());
        ya.backward(dy);

        opt.all_reduce = [&](Tensor& sums) { hook_b.push_back(sums.to_vector<double>()); };
        Tensor xb = leaf(x), gb = leaf(gamma), bb = leaf(beta), rb = leaf(r);
        Tensor h = ops::batch_norm(xb, gb, bb, rm_b, rv_b, opt);
        Tensor yb = ops::relu(with_residual ? ops::add(h, rb) : h);
        yb.backward(dy);

        CHECK(ya.to_vector<float>() == yb.to_vector<float>());
        CHECK(rm_a.to_vector<float>() == rm_b.to_vector<float>());
        CHECK(rv_a.to_vector<float>() == rv_b.to_vector<float>());
        CHECK(xa.grad().to_vector<float>() == xb.grad().to_vector<float>());
        CHECK(ga.grad().to_vector<float>() == gb.grad().to_vector<float>());
        CHECK(ba.grad().to_vector<float>() == bb.grad().to_vector<float>());
        if (with_residual) CHECK(ra.grad().to_vector<float>() == rb.grad().to_vector<float>());
        CHECK(hook_a == hook_b);
        CHECK(hook_a.size() == (training ? 2u : 0u));
        // Some outputs clipped, some not: the mask did something.
        const std::vector<float> y = ya.to_vector<float>();
        CHECK(std::count(y.begin(), y.end(), 0.0f) > 0);
        CHECK(std::count(y.begin(), y.end(), 0.0f) < static_cast<long>(y.size()));
      }
    }
  }
  const Tensor x = Tensor::randn({4, 3}, rng()), g = Tensor::full({3}, 1.0);
  CHECK_THROWS_WITH(ops::batch_norm_relu(x, g, g, Tensor(), Tensor(), {}, Tensor::randn({4, 2}, rng())),
                    Catch::Contains("batch_norm_relu") && Catch::Contains("'residual'"));
  CHECK_THROWS_WITH(
      ops::batch_norm_relu(x, g, g, Tensor(), Tensor(), {}, Tensor::randn({4, 3}, rng(), DType::f64)),
      Catch::Contains("'residual'"));
}

TEST_CASE("l2_normalize gives unit rows and clamps tiny ones", "[loss]") {
  Tensor x = Tensor::randn({5, 7}, rng(), DType::f32, 0.0, 10.0);
  Tensor y = ops::l2_normalize(x);
  for (int64_t i = 0; i < 5; ++i) {
    double ss = 0;
    for (int64_t k = 0; k < 7; ++k) ss += std::pow(y.data<float>()[i * 7 + k], 2);
    CHECK(std::sqrt(ss) == Approx(1.0).epsilon(1e-6));
  }
  // |x|^2 = 4e-16 < 1e-12: the norm is clamped, so y = x * 1e6.
  Tensor tiny = Tensor::from_vector<double>({2e-8, 0.0}, {1, 2});
  CHECK(ops::l2_normalize(tiny).data<double>()[0] == Approx(2e-8 * 1e6).epsilon(1e-12));
}

TEST_CASE("byol_loss: 0 for identical directions, 4 per opposite pair, matches 2 - 2 cos", "[loss]") {
  Tensor p = Tensor::randn({6, 8}, rng(), DType::f64);
  Tensor q = Tensor::randn({6, 8}, rng(), DType::f64);
  CHECK(ops::byol_loss(p, ops::scale(p, 3.0), q, ops::scale(q, 0.2)).item() == Approx(0.0).margin(1e-12));
  CHECK(ops::byol_loss(p, ops::scale(p, -2.0), q, q).item() == Approx(4.0).epsilon(1e-12));
  CHECK(ops::byol_loss(p, ops::scale(p, -1.0), q, ops::scale(q, -5.0)).item() == Approx(8.0).epsilon(1e-12));
  Tensor a = Tensor::randn({6, 8}, rng(), DType::f64), b = Tensor::randn({6, 8}, rng(), DType::f64);
  double want = 0;
  for (auto [u, v] : {std::pair{&p, &a}, {&q, &b}})
    for (int64_t i = 0; i < 6; ++i) {
      double uv = 0, uu = 0, vv = 0;
      for (int64_t k = 0; k < 8; ++k) {
        const double x = u->data<double>()[i * 8 + k], z = v->data<double>()[i * 8 + k];
        uv += x * z, uu += x * x, vv += z * z;
      }
      want += (2 - 2 * uv / std::sqrt(uu * vv)) / 6;
    }
  CHECK(ops::byol_loss(p, a, q, b).item() == Approx(want).epsilon(1e-12));
}

TEST_CASE("softmax_cross_entropy matches -log softmax; uniform logits give log K", "[loss]") {
  Tensor logits = Tensor::randn({4, 5}, rng(), DType::f64, 0.0, 3.0);
  std::vector<int64_t> labels = {4, 0, 2, 2};
  double want = 0;
  for (int i = 0; i < 4; ++i) {
    double z = 0;
    for (int k = 0; k < 5; ++k) z += std::exp(logits.data<double>()[i * 5 + k]);
    want += -(logits.data<double>()[i * 5 + labels[i]] - std::log(z)) / 4;
  }
  CHECK(ops::softmax_cross_entropy(logits, Tensor::from_vector(labels, {4})).item() ==
        Approx(want).epsilon(1e-12));
  Tensor flat = Tensor::full({3, 10}, 7.0);
  CHECK(ops::softmax_cross_entropy(flat, Tensor::from_vector<int32_t>({1, 2, 9}, {3})).item() ==
        Approx(std::log(10.0)).epsilon(1e-6));
}

TEST_CASE("linear and matmul match naive loops", "[dense]") {
  Tensor x = Tensor::randn({3, 4}, rng(), DType::f64), w = Tensor::randn({5, 4}, rng(), DType::f64);
  Tensor b = Tensor::randn({5}, rng(), DType::f64);
  Tensor y = ops::linear(x, w, b);
  Tensor m = ops::matmul(x, Tensor::randn({4, 2}, rng(), DType::f64));
  REQUIRE(m.shape() == Shape{3, 2});
  for (int i = 0; i < 3; ++i)
    for (int o = 0; o < 5; ++o) {
      double s = b.data<double>()[o];
      for (int k = 0; k < 4; ++k) s += x.data<double>()[i * 4 + k] * w.data<double>()[o * 4 + k];
      CHECK(y.data<double>()[i * 5 + o] == Approx(s).epsilon(1e-12));
    }
}

TEST_CASE("concat and slice are inverse along the batch dimension", "[shape]") {
  Tensor a = Tensor::randn({2, 3}, rng()), b = Tensor::randn({4, 3}, rng());
  Tensor c = ops::concat({a, b});
  REQUIRE(c.shape() == Shape{6, 3});
  CHECK(ops::slice(c, 0, 2).to_vector<float>() == a.to_vector<float>());
  CHECK(ops::slice(c, 2, 6).to_vector<float>() == b.to_vector<float>());
  CHECK(ops::slice(c, 2, 6).storage() == c.storage());  // a view, no copy
}

TEST_CASE("relu, add, scale, sum and mean compute what they say", "[elementwise]") {
  Tensor x = Tensor::from_vector<float>({-1.5f, 0.0f, 2.0f, 3.5f}, {2, 2});
  CHECK(ops::relu(x).to_vector<float>() == std::vector<float>{0.0f, 0.0f, 2.0f, 3.5f});
  CHECK(ops::add(x, x).to_vector<float>() == std::vector<float>{-3.0f, 0.0f, 4.0f, 7.0f});
  CHECK(ops::scale(x, -2.0).to_vector<float>() == std::vector<float>{3.0f, -0.0f, -4.0f, -7.0f});
  CHECK(ops::sum(x).item() == 4.0);
  CHECK(ops::mean(x).item() == 1.0);
}

TEST_CASE("count_top1_correct matches a naive loop: first maximum on ties, as std::max_element",
          "[metrics]") {
  std::mt19937_64 gen(23);
  for (Shape s : {Shape{1, 1}, Shape{9, 4}, Shape{64, 10}, Shape{3, 100}}) {
    std::vector<float> l = Tensor::randn(s, gen).to_vector<float>();
    for (float& v : l) v = std::round(v);  // many ties
    std::vector<int64_t> labels(s[0]);
    std::uniform_int_distribution<int64_t> pick(-1, s[1]);  // -1 and K are never correct
    for (auto& v : labels) v = pick(gen);
    int64_t expected = 0;
    for (int64_t i = 0; i < s[0]; ++i) {
      const float* row = l.data() + i * s[1];
      expected += std::max_element(row, row + s[1]) - row == labels[i];
    }
    const Tensor logits = Tensor::from_vector(l, s);
    const Tensor count = ops::count_top1_correct(logits, Tensor::from_vector(labels, {s[0]}));
    INFO(shape_str(s));
    CHECK(count.shape() == Shape{});
    CHECK(count.item() == double(expected));
    const Tensor count32 = ops::count_top1_correct(
        logits, Tensor::from_vector(std::vector<int32_t>(labels.begin(), labels.end()), {s[0]}));
    CHECK(count32.item() == double(expected));
    CHECK(ops::count_top1_correct(logits.to(DType::f64), Tensor::from_vector(labels, {s[0]})).item() ==
          double(expected));
  }
  // ties: the first of equal maxima is the prediction
  const Tensor tied = Tensor::from_vector<float>({1, 3, 3, 0, 2, 2}, {2, 3});
  CHECK(ops::count_top1_correct(tied, Tensor::from_vector<int64_t>({1, 1}, {2})).item() == 2.0);
  CHECK(ops::count_top1_correct(tied, Tensor::from_vector<int64_t>({2, 2}, {2})).item() == 0.0);
  CHECK_THROWS_WITH(
      ops::count_top1_correct(tied, Tensor::from_vector<int64_t>({1}, {1})),
      Catch::Matchers::Contains("count_top1_correct: argument 'labels' expected [N] with N = 2"));
  CHECK_THROWS_WITH(ops::count_top1_correct(tied, Tensor::from_vector<float>({1, 1}, {2})),
                    Catch::Matchers::Contains("expected dtype i32 or i64"));
}
