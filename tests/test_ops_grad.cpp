// Finite-difference gradient checks (float64) of every op with a backward, on random shapes that
// include odd sizes, non-square filters, strides and padding.
#include "engine/ops.h"
#include "tests/gradcheck.h"

using namespace byol;
using byol::testing::away_from_kinks;
using byol::testing::gradcheck;

namespace {
std::mt19937_64& rng() {
  static std::mt19937_64 gen(20261124);
  return gen;
}
int64_t pick(int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng());
}
Tensor randn(const Shape& s) {
  return Tensor::randn(s, rng(), DType::f64);
}
}  // namespace

TEST_CASE("gradcheck conv2d on random shapes, strides and padding", "[grad][conv]") {
  struct Case {
    int64_t n, h, w, c, k, r, s;
    int stride, pad;
  };
  std::vector<Case> cases = {{1, 5, 5, 3, 2, 3, 3, 1, 1},   // 'same' 3x3
                             {2, 7, 6, 3, 4, 3, 3, 2, 1},   // strided, odd sizes
                             {2, 4, 5, 5, 3, 1, 1, 1, 0},   // pointwise fast path
                             {1, 6, 6, 2, 3, 1, 1, 2, 0},   // 1x1 stride 2 (downsample)
                             {1, 5, 7, 2, 3, 1, 3, 1, 1}};  // non-square filter
  for (int i = 0; i < 3; ++i) {                             // plus random ones
    int r = static_cast<int>(pick(1, 3)), s = static_cast<int>(pick(1, 3));
    cases.push_back({pick(1, 2), pick(3, 7), pick(3, 7), pick(1, 5), pick(1, 5), r, s,
                     static_cast<int>(pick(1, 2)), static_cast<int>(pick(0, 1))});
  }
  for (const Case& c : cases) {
    INFO("x [" << c.n << "," << c.h << "," << c.w << "," << c.c << "] w [" << c.k << "," << c.r << "," << c.s
               << "," << c.c << "] stride " << c.stride << " pad " << c.pad);
    gradcheck(
        [&](const std::vector<Tensor>& in) {
          return ops::conv2d(in[0], in[1], {c.stride, c.pad});
        },
        {randn({c.n, c.h, c.w, c.c}), randn({c.k, c.r, c.s, c.c})}, rng());
  }
}

TEST_CASE("gradcheck max_pool2d steps around ties and padding", "[grad][pool]") {
  struct Case {
    int64_t n, h, w, c;
    int k, stride, pad;
  };
  for (Case c : {Case{2, 7, 7, 3, 3, 2, 1}, Case{1, 8, 5, 2, 3, 2, 1}, Case{1, 4, 6, 3, 2, 2, 0},
                 Case{1, 5, 5, 1, 3, 1, 1}}) {
    INFO("x [" << c.n << "," << c.h << "," << c.w << "," << c.c << "] kernel " << c.k);
    auto rep =
        gradcheck([&](const std::vector<Tensor>& in) { return ops::max_pool2d(in[0], c.k, c.stride, c.pad); },
                  {away_from_kinks({c.n, c.h, c.w, c.c}, rng())}, rng());
    CHECK(rep.kinks == 0);
  }
}

TEST_CASE("gradcheck global_avg_pool", "[grad][pool]") {
  gradcheck([](const std::vector<Tensor>& in) { return ops::global_avg_pool(in[0]); }, {randn({3, 3, 5, 4})},
            rng());
}

TEST_CASE("gradcheck batch_norm in training mode, NHWC and [N, C]", "[grad][bn]") {
  for (Shape shape :
       {Shape{2, 3, 3, 5}, Shape{7, 3}, Shape{pick(2, 4), pick(1, 4), pick(1, 4), pick(1, 6)}}) {
    INFO("x " << shape_str(shape));
    const int64_t C = shape.back();
    Tensor rm = Tensor::zeros({C}, DType::f64), rv = Tensor::full({C}, 1.0, DType::f64);
    gradcheck([&](const std::vector<Tensor>& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, {}); },
              {randn(shape), randn({C}), randn({C})}, rng(), {.eps = 1e-6, .tol = 1e-5});
  }
}

TEST_CASE("gradcheck batch_norm in groups (statistics per group)", "[grad][bn]") {
  for (Shape shape : {Shape{4, 2, 3, 3}, Shape{6, 4}}) {
    INFO("x " << shape_str(shape));
    const int64_t C = shape.back();
    Tensor rm = Tensor::zeros({C}, DType::f64), rv = Tensor::full({C}, 1.0, DType::f64);
    ops::BatchNormOptions opt;
    opt.groups = 2;
    gradcheck(
        [&](const std::vector<Tensor>& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, opt); },
        {randn(shape), randn({C}), randn({C})}, rng(), {.eps = 1e-6, .tol = 1e-5});
  }
}

TEST_CASE("gradcheck batch_norm in evaluation mode", "[grad][bn]") {
  const int64_t C = 4;
  Tensor rm = randn({C});
  Tensor rv = Tensor::uniform({C}, rng(), 0.5, 2.0, DType::f64);
  ops::BatchNormOptions opt;
  opt.training = false;
  gradcheck([&](const std::vector<Tensor>& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, opt); },
            {randn({2, 3, 2, C}), randn({C}), randn({C})}, rng());
}

TEST_CASE("gradcheck batch_norm_relu with and without the residual, training and evaluation", "[grad][bn]") {
  // The relu's kink (normalised x + residual = 0) is stepped around by gradcheck where a step crosses it.
  for (bool training : {true, false}) {
    for (Shape shape : {Shape{2, 3, 3, 5}, Shape{7, 3}}) {
      INFO("x " << shape_str(shape) << (training ? ", training" : ", evaluation"));
      const int64_t C = shape.back();
      Tensor rm = randn({C}), rv = Tensor::uniform({C}, rng(), 0.5, 2.0, DType::f64);
      ops::BatchNormOptions opt;
      opt.training = training;
      opt.groups = shape[0] == 2 ? 2 : 1;
      gradcheck(
          [&](const std::vector<Tensor>& in) {
            return ops::batch_norm_relu(in[0], in[1], in[2], rm, rv, opt, in[3]);
          },
          {randn(shape), randn({C}), randn({C}), randn(shape)}, rng(), {.eps = 1e-6, .tol = 1e-5});
      gradcheck(
          [&](const std::vector<Tensor>& in) {
            return ops::batch_norm_relu(in[0], in[1], in[2], rm, rv, opt);
          },
          {randn(shape), randn({C}), randn({C})}, rng(), {.eps = 1e-6, .tol = 1e-5});
    }
  }
}

TEST_CASE("gradcheck relu steps around the kink", "[grad][elementwise]") {
  auto rep = gradcheck([](const std::vector<Tensor>& in) { return ops::relu(in[0]); },
                       {away_from_kinks({3, 4, 5}, rng())}, rng());
  CHECK(rep.kinks == 0);
}

TEST_CASE("gradcheck add, scale, sum and mean", "[grad][elementwise]") {
  gradcheck([](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); },
            {randn({3, 5}), randn({3, 5})}, rng());
  gradcheck([](const std::vector<Tensor>& in) { return ops::scale(in[0], -2.5); }, {randn({4, 3})}, rng());
  gradcheck([](const std::vector<Tensor>& in) { return ops::sum(in[0]); }, {randn({2, 3, 4})}, rng());
  gradcheck([](const std::vector<Tensor>& in) { return ops::mean(in[0]); }, {randn({5, 7})}, rng());
}

TEST_CASE("gradcheck linear with and without bias, and matmul", "[grad][dense]") {
  const int64_t n = pick(1, 5), in = pick(1, 7), out = pick(1, 6);
  gradcheck([](const std::vector<Tensor>& v) { return ops::linear(v[0], v[1], v[2]); },
            {randn({n, in}), randn({out, in}), randn({out})}, rng());
  gradcheck([](const std::vector<Tensor>& v) { return ops::linear(v[0], v[1]); },
            {randn({n, in}), randn({out, in})}, rng());
  gradcheck([](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); },
            {randn({n, in}), randn({in, out})}, rng());
}

TEST_CASE("gradcheck l2_normalize", "[grad][loss]") {
  gradcheck([](const std::vector<Tensor>& in) { return ops::l2_normalize(in[0]); }, {randn({4, 6})}, rng());
}

TEST_CASE("gradcheck byol_loss with respect to all four inputs", "[grad][loss]") {
  const int64_t n = pick(1, 6), d = pick(2, 9);
  gradcheck([](const std::vector<Tensor>& in) { return ops::byol_loss(in[0], in[1], in[2], in[3]); },
            {randn({n, d}), randn({n, d}), randn({n, d}), randn({n, d})}, rng());
}

TEST_CASE("gradcheck softmax_cross_entropy with i32 and i64 labels", "[grad][loss]") {
  const int64_t n = 5, k = 4;
  std::vector<int64_t> l64 = {0, 3, 1, 1, 2};
  std::vector<int32_t> l32 = {2, 0, 3, 3, 1};
  gradcheck([](const std::vector<Tensor>& in) { return ops::softmax_cross_entropy(in[0], in[1]); },
            {randn({n, k}), Tensor::from_vector(l64, {n})}, rng());
  gradcheck([](const std::vector<Tensor>& in) { return ops::softmax_cross_entropy(in[0], in[1]); },
            {randn({n, k}), Tensor::from_vector(l32, {n})}, rng());
}

TEST_CASE("gradcheck concat and slice along the batch dimension", "[grad][shape]") {
  gradcheck(
      [](const std::vector<Tensor>& in) {
        return ops::concat({in[0], in[1], in[2]});
      },
      {randn({2, 3, 2}), randn({1, 3, 2}), randn({3, 3, 2})}, rng());
  gradcheck([](const std::vector<Tensor>& in) { return ops::slice(in[0], 1, 4); }, {randn({5, 2, 3})}, rng());
}

TEST_CASE("gradcheck a small network end to end", "[grad][composite]") {
  // conv -> bn -> relu -> max pool -> conv (stride 2) + residual-free head -> gap -> linear -> CE.
  std::vector<int64_t> labels = {1, 0, 2};
  Tensor rm = Tensor::zeros({4}, DType::f64), rv = Tensor::full({4}, 1.0, DType::f64);
  gradcheck(
      [&](const std::vector<Tensor>& in) {
        Tensor h = ops::conv2d(in[0], in[1], {1, 1});
        h = ops::relu(ops::batch_norm(h, in[2], in[3], rm, rv, {}));
        h = ops::max_pool2d(h, 3, 2, 1);
        h = ops::conv2d(h, in[4], {2, 1});
        h = ops::add(h, ops::scale(h, 0.5));
        Tensor logits = ops::linear(ops::global_avg_pool(h), in[5], in[6]);
        return ops::softmax_cross_entropy(logits, in[7]);
      },
      {randn({3, 6, 6, 2}), randn({4, 3, 3, 2}), randn({4}), randn({4}), randn({5, 3, 3, 4}), randn({3, 5}),
       randn({3}), Tensor::from_vector(labels, {3})},
      rng(), {.eps = 1e-6, .tol = 1e-5});
}
