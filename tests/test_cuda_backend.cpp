// The CUDA backend's readiness checks (issue 11).
//
// Untagged cases (run everywhere, no GPU needed): the host-side pieces the backend's robustness rests
// on — the operand alignments cuBLASLt is told, the cuDNN candidate filter and retry, the moments merge
// of the batch-norm statistics (run here as the kernel runs it, with the old E[x^2] - mean^2 scheme
// shown to fail the same check), and the explicit-FMA EMA formula both backends share.
//
// [cuda] cases (skipped without a GPU), each of which fails if its kernel or library call is wrong:
// parameters that are 64-byte-aligned windows of a flat buffer (not 256-byte-aligned fresh tensors)
// through linear and conv; the cuBLASLt fallback (GEMM + row-bias kernel) forced; batch norm at
// ResNet channel counts (64-2048) with batches that make every grid-stride loop and the per-thread row
// loop of the statistics run more than once, channel means of 100 against a spread of 1, and evaluation
// mode in groups; feature extraction, kNN and linear evaluation with a GPU encoder against a CPU one;
// and a whole BYOL step at ResNet-50 shapes against the CPU, TF32 off. The [cuda] cases print their
// measured errors, so a GPU run's log carries the figures.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "engine/cuda/blas.h"  // pointer_alignment (host-only inline)
#include "engine/cuda/conv_select.h"
#include "engine/cuda/launch.h"
#include "engine/math/batch_norm.h"
#include "engine/math/optimizers.h"
#if BYOL_WITH_CUDA
#include "byol/evaluation.h"
#include "byol/learner.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "engine/cuda/context.h"
#if BYOL_WITH_CUDA
#include "tests/cuda_test_helpers.h"
#endif
#include "engine/ops.h"
#include "models/resnet.h"
#endif

using namespace byol;

// --- host-side pieces (untagged) -------------------------------------------------------------------------

TEST_CASE("pointer_alignment: the largest power of two dividing the address, at most 256", "[kernels]") {
  alignas(256) static float buffer[256];
  const char* base = reinterpret_cast<const char*>(buffer);
  CHECK(cuda::pointer_alignment(base) == 256);
  CHECK(cuda::pointer_alignment(base + 512) == 256);
  CHECK(cuda::pointer_alignment(base + 64) == 64);  // a flat-buffer window (ParamRegistry::kAlign)
  CHECK(cuda::pointer_alignment(base + 192) == 64);
  CHECK(cuda::pointer_alignment(base + 128) == 128);
  CHECK(cuda::pointer_alignment(base + 4) == 4);  // a row slice of an odd-width activation
  CHECK(cuda::pointer_alignment(base + 12) == 4);
  CHECK(cuda::pointer_alignment(base + 8) == 8);
  CHECK(cuda::pointer_alignment(base + 1) == 1);
  CHECK(cuda::pointer_alignment(nullptr) == 256);
  CHECK(cuda::kLtBiasAlignment == 16);
}

TEST_CASE("cuDNN candidates: failed, oversized and (TF32 off) non-FMA results are dropped, order kept",
          "[kernels]") {
  constexpr int kFma = 3, kDefault = 0, kTensorOp = 1;  // cudnnMathType_t values
  const std::vector<cuda::ConvAlgoResult> found{
      {1, true, 100, kTensorOp}, {2, false, 0, kFma}, {3, true, size_t(1) << 40, kFma},
      {4, true, 10, kDefault},   {5, true, 20, kFma}, {6, true, 0, kFma}};
  auto algos = [](const std::vector<cuda::ConvAlgoResult>& v) {
    std::vector<int> out;
    for (const auto& r : v) out.push_back(r.algo);
    return out;
  };
  CHECK(algos(cuda::usable_conv_algorithms(found, size_t(1) << 20, false, kFma)) == std::vector<int>{5, 6});
  CHECK(algos(cuda::usable_conv_algorithms(found, size_t(1) << 20, true, kFma)) ==
        std::vector<int>{1, 4, 5, 6});
  CHECK(cuda::usable_conv_algorithms({}, 1, true, kFma).empty());
}

TEST_CASE("cuDNN retry: a candidate that fails to run hands over to the next, and the next call starts there",
          "[kernels]") {
  const std::vector<cuda::ConvAlgoResult> c{{7, true, 0, 3}, {8, true, 0, 3}, {9, true, 0, 3}};
  size_t next = 0;
  std::vector<int> tried;
  cuda::run_first_working(c, next, "conv", [&](const cuda::ConvAlgoResult& r, std::string& reason) {
    tried.push_back(r.algo);
    reason = "CUDNN_STATUS_EXECUTION_FAILED";
    return r.algo == 9;
  });
  CHECK(tried == std::vector<int>{7, 8, 9});
  CHECK(next == 2);
  tried.clear();
  cuda::run_first_working(c, next, "conv", [&](const cuda::ConvAlgoResult& r, std::string&) {
    tried.push_back(r.algo);
    return true;
  });
  CHECK(tried == std::vector<int>{9});  // the one that worked, not the fastest again
  size_t from_start = 0;
  CHECK_THROWS_WITH(cuda::run_first_working(c, from_start, "conv2d (cuDNN forward)",
                                            [](const cuda::ConvAlgoResult&, std::string& reason) {
                                              reason = "CUDNN_STATUS_NOT_SUPPORTED";
                                              return false;
                                            }),
                    Catch::Matchers::Contains("conv2d (cuDNN forward)") &&
                        Catch::Matchers::Contains("algorithm 7: CUDNN_STATUS_NOT_SUPPORTED") &&
                        Catch::Matchers::Contains("algorithm 9"));
  size_t none = 0;
  CHECK_THROWS_WITH(cuda::run_first_working({}, none, "conv",
                                            [](const cuda::ConvAlgoResult&, std::string&) { return true; }),
                    Catch::Matchers::Contains("none was usable"));
}

TEST_CASE("moments merge (Chan) equals the two-pass statistics of the union", "[kernels]") {
  std::mt19937_64 gen(5);
  std::normal_distribution<double> normal(3.0, 2.0);
  std::vector<double> v(1001);
  for (double& x : v) x = normal(gen);
  auto moments_of = [&](size_t a, size_t b) {  // two-pass, double
    double mean = 0;
    for (size_t i = a; i < b; ++i) mean += v[i];
    mean /= double(b - a);
    double m2 = 0;
    for (size_t i = a; i < b; ++i) m2 += (v[i] - mean) * (v[i] - mean);
    return math::Moments<double>{double(b - a), mean, m2};
  };
  const math::Moments<double> all = moments_of(0, v.size());
  for (size_t cut : {size_t(1), size_t(7), size_t(500), size_t(1000)}) {
    const math::Moments<double> m = math::moments_merge(moments_of(0, cut), moments_of(cut, v.size()));
    CHECK(m.count == all.count);
    CHECK(m.mean == Approx(all.mean).epsilon(1e-13));
    CHECK(m.m2 == Approx(all.m2).epsilon(1e-12));
  }
  const math::Moments<double> empty{0, 0, 0};
  CHECK(math::moments_merge(empty, all).m2 == all.m2);
  CHECK(math::moments_merge(all, empty).mean == all.mean);
  CHECK(math::moments_merge(empty, empty).count == 0);
  const math::Moments<double> s = math::moments_from_shifted_sums<double>(3, 10, 1 + 2 + 3, 1 + 4 + 9);
  CHECK(s.mean == Approx(12.0));  // values 11, 12, 13
  CHECK(s.m2 == Approx(2.0));
  double sum = 0, sum_sq = 0;
  math::moments_to_sums(all, sum, sum_sq);
  CHECK(math::bn_batch_var(all.count, sum, sum_sq) == Approx(all.m2 / all.count).epsilon(1e-12));
}

namespace {

// A channel's variance as the batch-norm kernel computes it: threads of kBnTileRows-strided rows summing
// fp32 values (shifted by their first one when `shifted`, else raw x and x^2 as the kernel did before),
// merged in double. Returns the relative error against the two-pass double variance.
double kernel_scheme_variance_error(const std::vector<float>& x, bool shifted) {
  const int64_t M = static_cast<int64_t>(x.size());
  const kernels::BnGrid g = kernels::bn_grid(M, 64);
  math::Moments<double> total{0, 0, 0};
  double raw_sum = 0, raw_sum_sq = 0;
  for (int64_t chunk = 0; chunk < g.row_chunks; ++chunk) {
    const int64_t r0 = chunk * g.rows_per_chunk, r1 = std::min(M, r0 + g.rows_per_chunk);
    for (int ty = 0; ty < kernels::kBnTileRows; ++ty) {
      if (r0 + ty >= r1) continue;
      const float shift = shifted ? x[r0 + ty] : 0.0f;
      float s = 0, ss = 0;
      int64_t n = 0;
      for (int64_t r = r0 + ty; r < r1; r += kernels::kBnTileRows, ++n) {
        const float d = x[r] - shift;
        s += d;
        ss += d * d;
      }
      total = math::moments_merge(total, math::moments_from_shifted_sums<double>(double(n), shift, s, ss));
      raw_sum += s;
      raw_sum_sq += ss;
    }
  }
  double sum = raw_sum, sum_sq = raw_sum_sq;
  if (shifted) math::moments_to_sums(total, sum, sum_sq);
  const double var = math::bn_batch_var(double(M), sum, sum_sq);
  double mean = 0;
  for (float v : x) mean += v;
  mean /= double(M);
  double ref = 0;
  for (float v : x) ref += (v - mean) * (v - mean);
  ref /= double(M);
  return std::abs(var - ref) / ref;
}

}  // namespace

TEST_CASE("batch-norm statistics as the kernel computes them keep the variance at mean / std = 100",
          "[kernels]") {
  std::mt19937_64 gen(6);
  for (int64_t M : {int64_t(1000), int64_t(25088), int64_t(200704)}) {
    std::normal_distribution<float> normal(100.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(M));
    for (float& v : x) v = normal(gen);
    const double shifted = kernel_scheme_variance_error(x, true);
    const double naive = kernel_scheme_variance_error(x, false);
    INFO("M " << M << ": relative variance error, shifted sums + Chan " << shifted
              << ", fp32 E[x^2] - mean^2 " << naive);
    CHECK(shifted < 1e-7);
    // The scheme the kernel used before loses 1.5e-5 to 4e-5 here (more with more rows): the [cuda] test
    // of the statistics (running variance with decay 0, within 1e-6) is what would have caught it.
    CHECK(naive > 100 * shifted);
    if (M >= 25088) CHECK(naive > 1e-5);
  }
}

TEST_CASE("EMA: explicit FMAs, one rounding per product, exact at both ends", "[kernels]") {
  const float a = 1.0f + std::ldexp(1.0f, -23);
  CHECK(math::fused_multiply_add(a, a, -(1.0f + std::ldexp(1.0f, -22))) == std::ldexp(1.0f, -46));
  std::mt19937_64 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float tau : {0.0f, 0.3f, 0.5f, 0.7f, 0.996f, 0.99999f, 1.0f}) {
    for (int i = 0; i < 200; ++i) {
      const float t = normal(gen), o = normal(gen);
      const float w = 1.0f - tau;
      const float want = w < 0.5f ? std::fma(w, o - t, t) : std::fma(-(o - t), 1.0f - w, o);
      CHECK(math::ema_update(t, o, tau) == want);
    }
    const float t = 0.25f, o = -3.5f;
    if (tau == 1.0f) CHECK(math::ema_update(t, o, tau) == t);
    if (tau == 0.0f) CHECK(math::ema_update(t, o, tau) == o);
  }
}

#if BYOL_WITH_CUDA

namespace {

using cuda_test::kGpu;
using cuda_test::rel_error;
using cuda_test::Tf32Guard;

void poison_device_pool() {
  cuda_test::poison_device_pool((int64_t(1) << 24));  // 64 MiB, freed at once
}

struct LtOffGuard {
  bool previous;
  LtOffGuard() : previous(cuda::set_lt_disabled(true)) {}
  ~LtOffGuard() { cuda::set_lt_disabled(previous); }
};

Tensor randn(const Shape& s, std::mt19937_64& gen, double mean = 0, double std = 1) {
  return Tensor::randn(s, gen, DType::f32, mean, std);
}

void report(const char* what, double e) {
  std::printf("[cuda readiness] %s: relative error %.3e\n", what, e);
}

// A linear and a conv layer whose parameters are windows of one registry's flat buffer, placed after a
// 16-element parameter so that they start 64 bytes past a 256-byte boundary.
struct FlatLayers {
  models::ParamRegistry reg;
  models::Linear pad{reg, "pad", 4, 4, false};  // 16 elements
  models::Linear lin;
  models::Conv2d conv;
  FlatLayers(int64_t in, int64_t out, int64_t c, int64_t k)
      : lin(reg, "lin", in, out, true), conv(reg, "conv", c, k, 3, 1, 1) {
    reg.finalize(true);
    std::mt19937_64 gen(17);
    reg.initialize(gen);  // the bias too (PyTorch's nn.Linear init): a bias that is not added shows
  }
};

}  // namespace

TEST_CASE("flat-buffer parameter windows (64-byte aligned) through linear and conv match the CPU", "[cuda]") {
  Tf32Guard tf32(false);
  for (bool lt_off : {false, true}) {
    std::unique_ptr<LtOffGuard> off = lt_off ? std::make_unique<LtOffGuard>() : nullptr;
    for (int64_t in : {int64_t(33), int64_t(256)}) {
      FlatLayers cpu(in, 130, 7, 12), gpu(in, 130, 7, 12);
      gpu.reg.to(kGpu);
      CHECK(cuda::pointer_alignment(gpu.lin.weight.raw_data()) == 64);
      CHECK(cuda::pointer_alignment(gpu.conv.weight.raw_data()) < 256);
      std::mt19937_64 gen(18);
      // x is a row slice starting one row in: with in = 33 its pointer is only 4-byte aligned
      const Tensor x_all = randn({9, in}, gen), dy = randn({8, 130}, gen);
      const Tensor xi = randn({2, 9, 9, 7}, gen), dyi = randn({2, 9, 9, 12}, gen);
      const Tensor x_cpu = x_all.slice_rows(1, 9).contiguous();
      Tensor x_gpu_all = x_all.to(kGpu);
      Tensor x_gpu = x_gpu_all.slice_rows(1, 9);
      REQUIRE(x_gpu.is_contiguous());
      const Tensor y_cpu = cpu.lin.forward(x_cpu);
      poison_device_pool();
      const Tensor y_gpu = gpu.lin.forward(x_gpu);
      y_cpu.backward(dy);
      y_gpu.backward(dy.to(kGpu));
      const Tensor c_cpu = cpu.conv.forward(xi);
      const Tensor c_gpu = gpu.conv.forward(xi.to(kGpu));
      c_cpu.backward(dyi);
      c_gpu.backward(dyi.to(kGpu));
      INFO("in " << in << (lt_off ? ", cuBLASLt off" : ""));
      const double e_y = rel_error(y_gpu, y_cpu), e_c = rel_error(c_gpu, c_cpu);
      const double e_g = rel_error(gpu.reg.grads(), cpu.reg.grads());
      report(lt_off ? "flat-buffer linear (fallback)" : "flat-buffer linear", e_y);
      report("flat-buffer conv", e_c);
      report("flat-buffer gradients", e_g);
      CHECK(e_y < 1e-5);
      CHECK(e_c < 1e-4);
      CHECK(e_g < 1e-4);
    }
  }
}

TEST_CASE("the cuBLASLt fallback (GEMM + row-bias kernel) matches the CPU, forced and by a misaligned bias",
          "[cuda]") {
  Tf32Guard tf32(false);
  std::mt19937_64 gen(19);
  struct Case {
    int64_t N, in, out;
  };
  for (const Case& c :
       {Case{1, 1, 1}, Case{5, 3, 7}, Case{17, 33, 9}, Case{64, 256, 130}, Case{3, 1000, 2049}}) {
    const Tensor x = randn({c.N, c.in}, gen), w = randn({c.out, c.in}, gen, 0, 0.1), b = randn({c.out}, gen);
    const Tensor want = ops::linear(x, w, b);
    {
      LtOffGuard off;
      poison_device_pool();
      const double e = rel_error(ops::linear(x.to(kGpu), w.to(kGpu), b.to(kGpu)), want);
      INFO(c.N << "x" << c.in << "->" << c.out << " forced fallback: " << e);
      CHECK(e < 1e-5);
    }
    // A bias one float into its buffer (4-byte aligned): below kLtBiasAlignment, so the fallback too.
    Tensor b_buf = Tensor::zeros({c.out + 1}, DType::f32, kGpu);
    Tensor b_off = b_buf.slice_rows(1, c.out + 1);
    b_off.copy_(b.to(kGpu));
    REQUIRE(cuda::pointer_alignment(b_off.raw_data()) == 4);
    poison_device_pool();
    const double e = rel_error(ops::linear(x.to(kGpu), w.to(kGpu), b_off), want);
    INFO(c.N << "x" << c.in << "->" << c.out << " misaligned bias: " << e);
    CHECK(e < 1e-5);
  }
  CHECK_FALSE(cuda::lt_disabled());  // the guards put it back
}

TEST_CASE("CUDA batch norm at ResNet scale: channels 64-2048, loops that run more than once, mean/std 100",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(20);
  struct Case {
    Shape shape;
    double mean, std;
  };
  // Each has M * C > kMaxBlocks * kThreads (2^21), so the 1-D grid-stride loops (apply, backward dx)
  // run at least twice per thread, and rows_per_chunk > kBnTileRows, so each statistics thread reads
  // several rows. The 100 / 1 cases cancel E[x^2] - mean^2 in fp32.
  for (const Case& c : {Case{{16, 56, 56, 64}, 0.5, 2.0}, Case{{32, 16, 16, 512}, 100.0, 1.0},
                        Case{{32, 7, 7, 2048}, 100.0, 1.0}, Case{{16, 28, 28, 256}, -3.0, 0.5}}) {
    const int64_t C = c.shape.back(), M = shape_numel(c.shape) / C;
    REQUIRE(M * C > kernels::kMaxBlocks * kernels::kThreads);
    REQUIRE(kernels::bn_grid(M, C).rows_per_chunk > kernels::kBnTileRows);
    // per-channel means spread around c.mean, so channels differ
    const Tensor offsets = randn({C}, gen, c.mean, std::abs(c.mean) * 0.1 + 0.1);
    std::vector<float> xv = randn(c.shape, gen, 0, c.std).to_vector<float>();
    const std::vector<float> ov = offsets.to_vector<float>();
    for (size_t i = 0; i < xv.size(); ++i) xv[i] += ov[i % static_cast<size_t>(C)];
    const Tensor x = Tensor::from_vector(xv, c.shape);
    const Tensor gamma = randn({C}, gen, 1.0, 0.2), beta = randn({C}, gen), dy = randn(c.shape, gen);
    {  // the elementwise kernels' grid-stride loops at the same size (ReLU + residual add, as a block ends)
      const Tensor xg = x.to(kGpu), dyg = dy.to(kGpu);
      poison_device_pool();
      CHECK(rel_error(ops::relu(ops::add(xg, dyg)), ops::relu(ops::add(x, dy))) == 0);
    }
    for (bool training : {true, false}) {
      Tensor rm_cpu = offsets.clone(), rv_cpu = Tensor::full({C}, c.std * c.std);
      Tensor rm_gpu = rm_cpu.to(kGpu), rv_gpu = rv_cpu.to(kGpu);
      Tensor xc = x.clone().set_requires_grad(true), xg = x.to(kGpu).set_requires_grad(true);
      Tensor gc = gamma.clone().set_requires_grad(true), gg = gamma.to(kGpu).set_requires_grad(true);
      Tensor bc = beta.clone().set_requires_grad(true), bg = beta.to(kGpu).set_requires_grad(true);
      ops::BatchNormOptions opt;
      opt.training = training;
      opt.decay = 0.0;  // the running statistics become the batch's: the variance itself is compared
      const Tensor yc = ops::batch_norm(xc, gc, bc, rm_cpu, rv_cpu, opt);
      poison_device_pool();
      const Tensor yg = ops::batch_norm(xg, gg, bg, rm_gpu, rv_gpu, opt);
      yc.backward(dy);
      poison_device_pool();
      yg.backward(dy.to(kGpu));
      INFO(shape_str(c.shape) << " mean " << c.mean << " std " << c.std
                              << (training ? " training" : " eval"));
      const double ey = rel_error(yg, yc), edx = rel_error(xg.grad(), xc.grad());
      const double egamma = rel_error(gg.grad(), gc.grad()), ebeta = rel_error(bg.grad(), bc.grad());
      const double erv = rel_error(rv_gpu, rv_cpu), erm = rel_error(rm_gpu, rm_cpu);
      std::printf(
          "[cuda readiness] batch_norm %s mean %g %s: y %.2e dx %.2e dgamma %.2e dbeta %.2e rm %.2e rv "
          "%.2e\n",
          shape_str(c.shape).c_str(), c.mean, training ? "training" : "eval", ey, edx, egamma, ebeta, erm,
          erv);
      // fp32 inputs of magnitude 100: x - mean is exact to ~1e-5 of the spread, whichever backend
      CHECK(ey < 5e-5);
      CHECK(edx < 5e-4);
      CHECK(egamma < 5e-4);
      CHECK(ebeta < 1e-5);
      CHECK(erm < 1e-6);
      CHECK(erv < 1e-6);  // the old fp32 E[x^2] - mean^2 was off by ~4e-5 at mean / std = 100
    }
  }
}

TEST_CASE("CUDA batch norm in evaluation mode with groups matches the CPU", "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(21);
  for (Shape s : {Shape{6, 3, 5, 9}, Shape{8, 33}, Shape{4, 7, 7, 2048}}) {
    const int64_t C = s.back();
    Shape half = s;
    half[0] /= 2;
    const Tensor x = ops::concat({randn(half, gen, 3.0, 2.0), randn(half, gen, -1.0, 0.5)});
    const Tensor gamma = randn({C}, gen, 1.0, 0.2), beta = randn({C}, gen), dy = randn(s, gen);
    const Tensor rm = randn({C}, gen), rv = Tensor::uniform({C}, gen, 0.5, 2.0);
    Tensor rm_gpu = rm.to(kGpu), rv_gpu = rv.to(kGpu);
    ops::BatchNormOptions opt;
    opt.training = false;
    opt.groups = 2;
    int calls = 0;
    opt.all_reduce = [&](Tensor&) { ++calls; };  // evaluation mode reduces nothing
    Tensor xc = x.clone().set_requires_grad(true), xg = x.to(kGpu).set_requires_grad(true);
    const Tensor yc = ops::batch_norm(xc, gamma, beta, rm, rv, opt);
    poison_device_pool();
    const Tensor yg = ops::batch_norm(xg, gamma.to(kGpu), beta.to(kGpu), rm_gpu, rv_gpu, opt);
    yc.backward(dy);
    poison_device_pool();
    yg.backward(dy.to(kGpu));
    INFO(shape_str(s));
    CHECK(rel_error(yg, yc) < 1e-6);
    CHECK(rel_error(xg.grad(), xc.grad()) < 1e-6);
    CHECK(calls == 0);
    CHECK(rm_gpu.to_vector<float>() == rm.to_vector<float>());  // evaluation leaves the statistics alone
    CHECK(rv_gpu.to_vector<float>() == rv.to_vector<float>());
  }
}

TEST_CASE("feature extraction, kNN and linear evaluation with a GPU encoder match a CPU encoder", "[cuda]") {
  Tf32Guard tf32(false);
  models::ResNetConfig cfg;
  cfg.depth = 18;
  cfg.stem = models::Stem::cifar;
  cfg.base_channels = 16;  // 16 .. 128 channels, 128 features
  cfg.blocks = {1, 1, 1, 1};
  models::ParamRegistry reg_cpu, reg_gpu;
  models::ResNet cpu(reg_cpu, "", cfg), gpu(reg_gpu, "", cfg);
  reg_cpu.finalize(false);
  reg_gpu.finalize(false);
  std::mt19937_64 gen(22);
  reg_cpu.initialize(gen);
  reg_cpu.stats().copy_(Tensor::uniform(reg_cpu.stats().shape(), gen, 0.5, 1.5));
  reg_gpu.params().copy_(reg_cpu.params());
  reg_gpu.stats().copy_(reg_cpu.stats());
  reg_gpu.to(kGpu);
  REQUIRE(gpu.device() == kGpu);
  auto train = std::make_shared<data::SyntheticDataset>(300, 5, 16, 1);
  auto test = std::make_shared<data::SyntheticDataset>(100, 5, 16, 2);
  const data::AugmentOptions centre = data::AugmentOptions::eval(16, data::Normalization::cifar10(), 1.0);
  eval::ExtractOptions e;
  e.batch_size = 64;  // 300 = 4 x 64 + 44: a partial last batch
  e.workers = 1;
  const eval::Features tr_cpu = eval::extract_features(cpu, *train, centre, e);
  poison_device_pool();
  const eval::Features tr_gpu = eval::extract_features(gpu, *train, centre, e);
  const eval::Features te_cpu = eval::extract_features(cpu, *test, centre, e);
  const eval::Features te_gpu = eval::extract_features(gpu, *test, centre, e);
  REQUIRE(tr_gpu.x.device().is_cpu());
  const double ef = rel_error(tr_gpu.x, tr_cpu.x);
  report("extract_features", ef);
  CHECK(ef < 1e-4);
  CHECK(tr_gpu.labels.to_vector<int64_t>() == tr_cpu.labels.to_vector<int64_t>());
  CHECK(reg_gpu.stats().to_vector<float>() == reg_cpu.stats().to_vector<float>());  // untouched

  const eval::ClassifyResult k_cpu = eval::knn_classify(tr_cpu, te_cpu),
                             k_gpu = eval::knn_classify(tr_gpu, te_gpu);
  int64_t same = 0;
  for (size_t i = 0; i < k_cpu.predictions.size(); ++i) same += k_cpu.predictions[i] == k_gpu.predictions[i];
  std::printf("[cuda readiness] kNN top-1 cpu %.4f gpu %.4f, %lld of %zu predictions equal\n", k_cpu.top1,
              k_gpu.top1, static_cast<long long>(same), k_cpu.predictions.size());
  CHECK(same >= 98);  // near-ties may flip on 1e-5 differences, no more
  CHECK(std::abs(k_gpu.top1 - k_cpu.top1) <= 0.02);

  eval::LinearEvalOptions o;
  o.lr_grid = {0.03, 0.3};
  o.epochs = 2;
  o.batch_size = 32;
  const data::AugmentOptions crop = data::AugmentOptions::crop_flip(16, data::Normalization::cifar10());
  const eval::LinearEvalResult l_cpu = eval::linear_eval_augmented(cpu, train, test, crop, centre, o, e);
  poison_device_pool();
  const eval::LinearEvalResult l_gpu = eval::linear_eval_augmented(gpu, train, test, crop, centre, o, e);
  std::printf("[cuda readiness] linear eval (augmented) top-1 cpu %.4f gpu %.4f, best lr %g / %g\n",
              l_cpu.test.top1, l_gpu.test.top1, l_cpu.best_lr, l_gpu.best_lr);
  CHECK(l_gpu.test.count == 100);
  CHECK(l_gpu.feature_dim == l_cpu.feature_dim);
  CHECK(std::abs(l_gpu.test.top1 - l_cpu.test.top1) <= 0.03);
  for (size_t i = 0; i < l_cpu.sweep.size(); ++i)
    CHECK(std::abs(l_gpu.sweep[i].val_top1 - l_cpu.sweep[i].val_top1) <= 0.04);
}

TEST_CASE("a whole BYOL step at ResNet-50 shapes on the GPU matches the CPU (TF32 off)",
          "[cuda][cuda-resnet50]") {
  Tf32Guard tf32(false);
  NetworkConfig net;  // ResNet-50, ImageNet stem, projector 4096 -> 256, predictor 4096: the paper's shapes
  net.encoder.depth = 50;
  net.encoder.stem = models::Stem::imagenet;
  TrainConfig train;
  train.batch_size = 4;
  train.total_steps = 10;
  train.warmup_steps = 0;
  train.base_lr = 0.2;
  train.weight_decay = 1.5e-6;
  train.tau_base = 0.99;
  train.seed = 5;
  Learner cpu(net, train), gpu(net, train);
  gpu.to(kGpu);
  REQUIRE(rel_error(gpu.nets.online.params(), cpu.nets.online.params()) == 0);
  std::mt19937_64 gen(23);
  const Tensor online_before = cpu.nets.online.params().clone();
  const Tensor v1 = randn({4, 64, 64, 3}, gen), v2 = randn({4, 64, 64, 3}, gen);
  const StepValues mc = cpu.step(v1, v2).read();
  poison_device_pool();
  const StepValues mg = gpu.step(v1.to(kGpu), v2.to(kGpu)).read();
  const double e_loss = std::abs(mg.loss - mc.loss) / std::abs(mc.loss);
  const double e_grad = rel_error(gpu.nets.online.grads(), cpu.nets.online.grads());
  const double e_params = rel_error(gpu.nets.online.params(), cpu.nets.online.params());
  const double e_update =
      rel_error(ops::add(gpu.nets.online.params().to(Device::cpu()), ops::scale(online_before, -1.0)),
                ops::add(cpu.nets.online.params(), ops::scale(online_before, -1.0)));
  const double e_target = rel_error(gpu.nets.target.params(), cpu.nets.target.params());
  const double e_stats = rel_error(gpu.nets.online.stats(), cpu.nets.online.stats());

  // How far float32 rounding alone moves this step: the same step on the CPU with the first view changed
  // by 1e-6 relative (about 16 float32 ulps) per pixel. Batch norm over 4 x 2 x 2 values at the last stage
  // and over 4 rows in the MLPs makes the step ill-conditioned: on the CPU (2026-12-04) a 1e-7 change gave
  // gradients 1.7e-2 apart and 1e-6 gave 2.8e-2; the first GPU run measured 2.25e-2 against a fixed 1e-2
  // written before any GPU ran. A wrong kernel moves the gradients by O(1), far beyond 3x this noise.
  Learner noisy(net, train);
  std::vector<float> shaken = v1.to_vector<float>();
  std::mt19937_64 shake(29);
  std::normal_distribution<double> unit;
  for (float& x : shaken) x = static_cast<float>(x * (1 + 1e-6 * unit(shake)));
  noisy.step(Tensor::from_vector(shaken, v1.shape()), v2).read();
  const double n_grad = rel_error(noisy.nets.online.grads(), cpu.nets.online.grads());
  const double n_update = rel_error(ops::add(noisy.nets.online.params(), ops::scale(online_before, -1.0)),
                                    ops::add(cpu.nets.online.params(), ops::scale(online_before, -1.0)));
  std::printf(
      "[cuda readiness] ResNet-50 step (batch 4, 64 px): loss cpu %.8f gpu %.8f (%.2e); gradients %.2e, "
      "parameters %.2e, update %.2e, target %.2e, BN statistics %.2e; CPU vs CPU with the input changed "
      "by 1e-6: gradients %.2e, update %.2e\n",
      mc.loss, mg.loss, e_loss, e_grad, e_params, e_update, e_target, e_stats, n_grad, n_update);
  CHECK(n_grad < 0.1);  // the yardstick itself: rounding-sized, not a different step
  CHECK(e_loss < 1e-4);
  CHECK(e_grad < 3 * n_grad);
  CHECK(e_params < 1e-4);
  CHECK(e_update < 3 * n_update);
  CHECK(e_target < 1e-4);
  CHECK(e_stats < 1e-4);
}

#endif  // BYOL_WITH_CUDA
