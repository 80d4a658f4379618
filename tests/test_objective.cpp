// The unified objective (byol/objective.h) and ops::all_gather_rows: the loss against the paper's formula
// evaluated literally (loops, logs of sums of exponentials, the own view left out by index), beta = 0
// against byol_loss, gradients by finite differences, the gather's forward and backward with a stand-in
// for the other rank. The two-rank run through a real communicator is in tests/mpi/test_mpi.cpp.
#include <catch2/catch.hpp>
#include <cmath>

#include "byol/objective.h"
#include "tests/gradcheck.h"

using namespace byol;
using byol::testing::gradcheck;

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 gen(20261204);
  return gen;
}

using Rows = std::vector<std::vector<double>>;

Rows rows_of(const Tensor& t) {
  const Tensor c = t.contiguous().to(DType::f64);
  const double* d = c.data<double>();
  Rows r(static_cast<size_t>(t.size(0)), std::vector<double>(static_cast<size_t>(t.size(1))));
  for (size_t i = 0; i < r.size(); ++i)
    for (size_t k = 0; k < r[i].size(); ++k) r[i][k] = d[i * r[i].size() + k];
  return r;
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t k = 0; k < a.size(); ++k) ab += a[k] * b[k], aa += a[k] * a[k], bb += b[k] * b[k];
  return ab / std::sqrt(aa * bb);
}

// 2 - InfoNCE_{alpha,beta}(v, v') of the paper, phi = p (view v), psi = t (t_same: view v, t_other: v').
double two_minus_infonce(const Rows& p, const Rows& t_other, const Rows& t_same, double alpha, double beta) {
  const size_t n = p.size();
  double s_pos = 0, lse = 0;
  for (size_t i = 0; i < n; ++i) {
    s_pos += cosine(p[i], t_other[i]);
    double z = 0;
    for (size_t j = 0; j < n; ++j) {
      if (j != i) z += std::exp(cosine(p[i], t_same[j]) / alpha);
      z += std::exp(cosine(p[i], t_other[j]) / alpha);
    }
    lse += std::log(z);
  }
  const double infonce = 2.0 / n * s_pos - beta * 2.0 * alpha / n * lse;
  return 2 - infonce;
}

double paper_loss(const Tensor& p1, const Tensor& t2, const Tensor& p2, const Tensor& t1, double alpha,
                  double beta) {
  const Rows a = rows_of(p1), b = rows_of(t2), c = rows_of(p2), d = rows_of(t1);
  return two_minus_infonce(a, b, d, alpha, beta) + two_minus_infonce(c, d, b, alpha, beta);
}

}  // namespace

TEST_CASE("unified objective: the paper's formula evaluated literally, for beta 0, 0.3 and 1",
          "[loss][objective]") {
  for (int64_t n : {1, 3, 8}) {
    for (double beta : {0.0, 0.3, 1.0}) {
      for (double alpha : {0.1, 0.5}) {
        INFO("N " << n << " beta " << beta << " alpha " << alpha);
        const Tensor p1 = Tensor::randn({n, 5}, rng()), t2 = Tensor::randn({n, 5}, rng()),
                     p2 = Tensor::randn({n, 5}, rng()), t1 = Tensor::randn({n, 5}, rng());
        UnifiedObjective objective({beta, alpha});
        const double got = objective.loss(p1, t2, p2, t1).item();
        CHECK(got == Approx(paper_loss(p1, t2, p2, t1, alpha, beta)).epsilon(2e-6));
        // twice with the same shapes: the cached mask and labels give the same value
        CHECK(objective.loss(p1, t2, p2, t1).item() == got);
      }
    }
  }
}

TEST_CASE("unified objective: beta 0 is byol_loss to the bit; beta 1 at identical views is 4 + 4 alpha CE",
          "[loss][objective]") {
  const Tensor p1 = Tensor::randn({6, 7}, rng()), t2 = Tensor::randn({6, 7}, rng()),
               p2 = Tensor::randn({6, 7}, rng()), t1 = Tensor::randn({6, 7}, rng());
  UnifiedObjective byol({0.0, 0.1});
  CHECK(byol.loss(p1, t2, p2, t1).item() == ops::byol_loss(p1, t2, p2, t1).item());
  // All four the same unit-free direction per image, orthogonal across images (one-hot rows): the
  // positive's logit is 1/alpha, every other candidate's 0, so CE = log(1 + (2N - 2) e^{-1/alpha}).
  const int64_t n = 4;
  std::vector<float> eye(n * n, 0.f);
  for (int64_t i = 0; i < n; ++i) eye[i * n + i] = 2.f;
  const Tensor e = Tensor::from_vector(eye, {n, n});
  const double alpha = 0.5;
  UnifiedObjective simclr({1.0, alpha});
  const double ce = std::log(1 + (2 * n - 2) * std::exp(-1 / alpha));
  CHECK(simclr.loss(e, e, e, e).item() == Approx(4 + 2 * alpha * 2 * ce).epsilon(1e-6));
}

TEST_CASE("gradcheck the unified objective with respect to all four inputs", "[grad][loss][objective]") {
  for (double beta : {0.4, 1.0}) {
    INFO("beta " << beta);
    UnifiedObjective objective({beta, 0.3});
    const auto fn = [&](const std::vector<Tensor>& in) { return objective.loss(in[0], in[1], in[2], in[3]); };
    gradcheck(fn,
              {Tensor::randn({5, 4}, rng(), DType::f64), Tensor::randn({5, 4}, rng(), DType::f64),
               Tensor::randn({5, 4}, rng(), DType::f64), Tensor::randn({5, 4}, rng(), DType::f64)},
              rng());
  }
}

TEST_CASE("unified objective: bad configuration and shapes are named", "[objective][errors]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(UnifiedObjective({1.5, 0.1}), Contains("beta must be in [0, 1]"));
  CHECK_THROWS_WITH(UnifiedObjective({0.5, 0.0}), Contains("temperature"));
  UnifiedObjective o({0.5, 0.1});
  CHECK_THROWS_WITH(
      o.loss(Tensor::zeros({4, 8}), Tensor::zeros({4, 8}), Tensor::zeros({3, 8}), Tensor::zeros({4, 8})),
      Contains("[N, D] of one shape"));
}

TEST_CASE("all_gather_rows: rows in rank order forward, this rank's rows of the summed gradient backward",
          "[objective][gather]") {
  const Tensor mine = Tensor::randn({3, 2}, rng(), DType::f64);
  CHECK(ops::all_gather_rows(mine, 0, 1, {}).impl() == mine.impl());
  // Rank 1 of 2: the stand-in communicator adds rank 0's contribution, whatever it is given: rows in
  // the forward pass, rank 0's gradient of the gathered rows in the backward pass.
  const Tensor theirs = Tensor::randn({3, 2}, rng(), DType::f64);
  const Tensor their_grad = Tensor::randn({6, 2}, rng(), DType::f64);
  int calls = 0;
  const ops::StatsAllReduce sum = [&](Tensor& t) {
    REQUIRE(t.shape() == Shape{6, 2});
    ops::add_(t, calls++ == 0 ? ops::concat({theirs, Tensor::zeros({3, 2}, DType::f64)}) : their_grad);
  };
  Tensor x = mine.clone();
  x.set_requires_grad(true);
  const Tensor y = ops::all_gather_rows(x, 1, 2, sum);
  CHECK(y.slice_rows(0, 3).to_vector<double>() == theirs.to_vector<double>());
  CHECK(y.slice_rows(3, 6).to_vector<double>() == mine.to_vector<double>());
  const Tensor my_grad = Tensor::randn({6, 2}, rng(), DType::f64);
  y.backward(my_grad);
  CHECK(calls == 2);
  const std::vector<double> g = x.grad().to_vector<double>(), a = my_grad.to_vector<double>(),
                            b = their_grad.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == a[6 + i] + b[6 + i]);
  CHECK_THROWS_WITH(ops::all_gather_rows(mine, 2, 2, sum), Catch::Matchers::Contains("0 <= rank < world"));
  CHECK_THROWS_WITH(ops::all_gather_rows(mine, 0, 2, {}), Catch::Matchers::Contains("cross-rank sum"));
}
