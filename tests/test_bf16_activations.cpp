// bf16 activations (models::ForwardContext::bf16_activations): every op that takes bf16 storage against its
// float32 path on the same values.
//
// The rule the CPU backend follows: a bf16 activation is widened to float (exactly), the op's float32 math
// runs on it (products in bf16 for the convolutions: ConvGeom::bf16, which float32 inputs get from
// Conv2dParams::bf16), and each stored bf16 result is the float32 result rounded once to nearest even. So
// with inputs and output gradients that are bf16 values, an op's bf16 outputs and activation gradients must
// equal its float32 ones rounded to bf16 — to the bit — and its float32 parameter gradients, running
// statistics and the hook's sums must equal the float32 path's exactly. That is the tolerance: zero after one
// rounding. The float32 paths are the gradient-checked ones (test_ops_grad.cpp), and the rounding is
// Tensor::to(bf16) (test_tensor.cpp).
#include <catch2/catch.hpp>
#include <random>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace byol;
using Catch::Contains;

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 gen(31);
  return gen;
}

// Random float32 values that are exactly bf16 values (so both paths start from the same numbers).
Tensor bf16_valued(const Shape& shape, double scale = 1.0) {
  return Tensor::randn(shape, rng(), DType::f32, 0.0, scale).to(DType::bf16).to(DType::f32);
}

Tensor leaf(const Tensor& t) {
  Tensor c = t.clone();
  c.set_requires_grad(true);
  return c;
}

// The bits of a bf16 tensor, and of a float32 tensor rounded to bf16.
std::vector<uint16_t> bits(const Tensor& t) {
  const Tensor b = t.dtype() == DType::bf16 ? t : t.to(DType::bf16);
  std::vector<uint16_t> out;
  for (bf16 v : b.to_vector<bf16>()) out.push_back(v.bits);
  return out;
}

// Some values differ between a float32 tensor and its bf16 rounding (the comparison is not vacuous).
bool rounding_happened(const Tensor& f32) {
  return f32.to_vector<float>() != f32.to(DType::bf16).to(DType::f32).to_vector<float>();
}

}  // namespace

TEST_CASE("bf16 activations: conv2d equals its bf16-products float32 path, rounded once",
          "[conv][bf16][bf16-activations]") {
  struct Case {
    Shape x, w;
    int stride, pad;
  };
  // 3x3 with padding, strided, a 1x1 downsample, the stem's 3 channels, ResNet's last stage at 4x4.
  for (const Case& c : {Case{{2, 6, 5, 8}, {16, 3, 3, 8}, 1, 1}, Case{{2, 7, 7, 16}, {8, 3, 3, 16}, 2, 1},
                        Case{{3, 8, 8, 16}, {32, 1, 1, 16}, 2, 0}, Case{{2, 9, 9, 3}, {8, 3, 3, 3}, 1, 1},
                        Case{{2, 4, 4, 32}, {32, 3, 3, 32}, 1, 1}}) {
    INFO("x " << shape_str(c.x) << " w " << shape_str(c.w) << " stride " << c.stride << " pad " << c.pad);
    const Tensor x = bf16_valued(c.x), w = Tensor::randn(c.w, rng(), DType::f32, 0.0, 0.2);
    Tensor xf = leaf(x), wf = leaf(w);
    Tensor yf = ops::conv2d(xf, wf, {c.stride, c.pad, true});
    const Tensor dy = bf16_valued(yf.shape());
    yf.backward(dy);

    Tensor xb = leaf(x.to(DType::bf16)), wb = leaf(w);
    Tensor yb = ops::conv2d(xb, wb, {c.stride, c.pad});
    REQUIRE(yb.dtype() == DType::bf16);
    yb.backward(dy.to(DType::bf16));
    REQUIRE(xb.grad().dtype() == DType::bf16);
    REQUIRE(wb.grad().dtype() == DType::f32);

    CHECK(bits(yb) == bits(yf));
    CHECK(bits(xb.grad()) == bits(xf.grad()));
    CHECK(wb.grad().to_vector<float>() == wf.grad().to_vector<float>());
    CHECK(rounding_happened(yf));
  }
  // The weights stay float32 (the master copy); a bf16 weight is refused by name.
  const Tensor x = Tensor::randn({1, 4, 4, 2}, rng()).to(DType::bf16);
  CHECK_THROWS_WITH(ops::conv2d(x, Tensor::randn({3, 3, 3, 2}, rng()).to(DType::bf16), {1, 1}),
                    Contains("'weight'") && Contains("expected dtype f32") &&
                        Contains("bf16 inputs keep float32 parameters"));
}

TEST_CASE(
    "bf16 activations: batch norm (plain, fused with ReLU and the shortcut) equals float32, rounded once",
    "[bn][bf16][bf16-activations]") {
  for (bool training : {true, false}) {
    for (int variant = 0; variant < 3; ++variant) {  // batch_norm; batch_norm_relu; with a residual
      for (Shape shape : {Shape{4, 5, 3, 8}, Shape{6, 16}}) {
        INFO((training ? "training" : "evaluation") << ", variant " << variant << ", " << shape_str(shape));
        const int64_t C = shape.back();
        const Tensor x = bf16_valued(shape, 3.0), dy = bf16_valued(shape), r = bf16_valued(shape);
        const Tensor gamma = Tensor::randn({C}, rng()), beta = Tensor::randn({C}, rng());
        const Tensor rm0 = Tensor::randn({C}, rng()), rv0 = Tensor::full({C}, 1.5);
        struct Run {
          Tensor x, g, b, r, y, rm, rv;
          std::vector<std::vector<double>> hook;
        };
        auto run = [&](DType act) {
          Run o{leaf(x.to(act)), leaf(gamma), leaf(beta),  leaf(r.to(act)),
                Tensor(),        rm0.clone(), rv0.clone(), {}};
          ops::BatchNormOptions opt;
          opt.training = training;
          opt.groups = 2;
          opt.all_reduce = [&o](Tensor& sums) { o.hook.push_back(sums.to_vector<double>()); };
          if (variant == 0)
            o.y = ops::batch_norm(o.x, o.g, o.b, o.rm, o.rv, opt);
          else
            o.y = ops::batch_norm_relu(o.x, o.g, o.b, o.rm, o.rv, opt, variant == 2 ? o.r : Tensor());
          o.y.backward(dy.to(act));
          return o;
        };
        const Run f = run(DType::f32), b = run(DType::bf16);
        REQUIRE(b.y.dtype() == DType::bf16);
        CHECK(bits(b.y) == bits(f.y));
        CHECK(bits(b.x.grad()) == bits(f.x.grad()));
        CHECK(b.g.grad().to_vector<float>() == f.g.grad().to_vector<float>());
        CHECK(b.b.grad().to_vector<float>() == f.b.grad().to_vector<float>());
        if (variant == 2) CHECK(bits(b.r.grad()) == bits(f.r.grad()));
        CHECK(b.rm.to_vector<float>() == f.rm.to_vector<float>());
        CHECK(b.rv.to_vector<float>() == f.rv.to_vector<float>());
        CHECK(b.hook == f.hook);
        CHECK(rounding_happened(f.y));
        CHECK(rounding_happened(f.x.grad()));
      }
    }
  }
  // Parameters stay float32: bf16 ones are refused by name.
  const Tensor x = Tensor::randn({4, 3}, rng()).to(DType::bf16), g = Tensor::full({3}, 1.0);
  CHECK_THROWS_WITH(ops::batch_norm(x, g.to(DType::bf16), g, Tensor(), Tensor(), {}),
                    Contains("'gamma'") && Contains("bf16 inputs keep float32 parameters"));
  CHECK_THROWS_WITH(ops::batch_norm_relu(x, g, g, Tensor(), Tensor(), {}, Tensor::randn({4, 3}, rng())),
                    Contains("'residual'") && Contains("expected dtype bf16"));
}

TEST_CASE("bf16 activations: pooling, relu, add and autograd's sums equal float32, rounded once",
          "[pool][bf16][bf16-activations]") {
  // Max pool 3x3/2 (overlapping windows: an input gathers several gradients, summed in float, rounded once),
  // global average pool, relu, add, and a tensor used twice (autograd adds its two gradients).
  const Tensor x = bf16_valued({2, 9, 7, 6});
  auto run = [&](DType act, Tensor& xl) {
    xl = leaf(x.to(act));
    const Tensor m = ops::max_pool2d(xl, 3, 2, 1);
    const Tensor a = ops::global_avg_pool(ops::add(ops::relu(xl), xl));
    return std::pair{m, a};
  };
  Tensor xf, xb;
  auto [mf, af] = run(DType::f32, xf);
  auto [mb, ab] = run(DType::bf16, xb);
  REQUIRE(mb.dtype() == DType::bf16);
  REQUIRE(ab.dtype() == DType::bf16);
  CHECK(bits(mb) == bits(mf));
  CHECK(bits(ab) == bits(af));
  CHECK(rounding_happened(af));
  // Separately per output, so each gradient is one op's rounding of float32's.
  const Tensor dm = bf16_valued(mf.shape()), da = bf16_valued(af.shape());
  mf.backward(dm);
  mb.backward(dm.to(DType::bf16));
  CHECK(bits(xb.grad()) == bits(xf.grad()));
  Tensor xf2, xb2;
  auto [mf2, af2] = run(DType::f32, xf2);
  auto [mb2, ab2] = run(DType::bf16, xb2);
  af2.backward(da);
  ab2.backward(da.to(DType::bf16));
  CHECK(bits(xb2.grad()) == bits(xf2.grad()));
  CHECK(rounding_happened(xf2.grad()));
  // Ops that do not take bf16 say so.
  CHECK_THROWS_WITH(ops::l2_normalize(Tensor::randn({2, 3}, rng()).to(DType::bf16)),
                    Contains("l2_normalize") && Contains("expected dtype f32 or f64"));
}

TEST_CASE("cast: to bf16 rounds to nearest even; the gradient is cast back", "[bf16][bf16-activations]") {
  const Tensor x = Tensor::randn({3, 5}, rng(), DType::f32, 0.0, 4.0);
  Tensor xl = leaf(x);
  const Tensor y = ops::cast(xl, DType::bf16);
  REQUIRE(y.dtype() == DType::bf16);
  CHECK(bits(y) == bits(x));  // Tensor::to's rounding (test_tensor.cpp checks it against the definition)
  CHECK(ops::cast(y, DType::bf16).impl() == y.impl());  // already bf16: the same tensor
  // back = cast(y, f32), seeded with w: its backward rounds w to bf16, the first cast's widens it again.
  Tensor back = ops::cast(y, DType::f32);
  const Tensor w = Tensor::randn({3, 5}, rng());
  back.backward(w);
  REQUIRE(xl.grad().dtype() == DType::f32);
  CHECK(xl.grad().to_vector<float>() == w.to(DType::bf16).to(DType::f32).to_vector<float>());
  CHECK(rounding_happened(w));
  CHECK_THROWS_WITH(ops::cast(x, DType::i32), Contains("cast") && Contains("'dtype'"));
}
