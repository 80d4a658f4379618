// The oneDNN float32 convolutions (engine/cpu/conv_onednn.cpp), direct and with Winograd, against the
// im2col reference run in float64 on the same inputs: forward, backward data and backward filter, on
// ResNet's shapes (where a fast oneDNN kernel must be chosen — and Winograd for the 3x3 stride-1 ones —
// or the speed-up silently vanishes) and on odd ones (channel counts that are not multiples of 8,
// non-square images, 5x5 and 7x7 filters, stride 2 with odd sizes). Outputs are poisoned with NaN before
// each call, so an element the kernel does not write shows, and are followed by a guard zone that must stay
// untouched, so a write past the end shows without a memory checker (oneDNN 2.6's AVX2 1x1 stride-2
// backward-data kernel wrote past a 4-channel gradient and corrupted the heap).
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/dtype.h"
#include "engine/ops.h"

using namespace byol;

namespace {

struct Case {
  const char* what;
  int64_t n, h, w, c, k, r;
  int stride, pad;
  bool resnet;  // a shape of the ResNets we train: oneDNN must offer a non-reference kernel
};

std::vector<double> random_vector(size_t n, std::mt19937_64& gen) {
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = d(gen);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// ||a - b|| / ||b||, and every element of a finite.
double relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, ref = 0;
  size_t not_finite = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    not_finite += !std::isfinite(a[i]);
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    ref += b[i] * b[i];
  }
  CHECK(not_finite == 0);
  return std::sqrt(diff / std::max(ref, 1e-300));
}

}  // namespace

TEST_CASE("oneDNN convolutions match the im2col reference in float64", "[conv][onednn]") {
  if (!cpu::onednn_available()) {
    WARN("skipped: this build has no oneDNN (scripts/setup.sh installs libdnnl-dev; reconfigure)");
    return;
  }
  const Case cases[] = {
      {"layer1 3x3", 2, 32, 32, 64, 64, 3, 1, 1, true},
      {"layer2 3x3 stride 2", 2, 32, 32, 64, 128, 3, 2, 1, true},
      {"layer2 1x1 downsample", 2, 32, 32, 64, 128, 1, 2, 0, true},
      {"layer3 3x3", 2, 8, 8, 256, 256, 3, 1, 1, true},
      {"layer4 3x3", 2, 4, 4, 512, 512, 3, 1, 1, true},
      {"CIFAR stem", 3, 32, 32, 3, 64, 3, 1, 1, true},
      {"ImageNet stem", 2, 40, 40, 3, 64, 7, 2, 3, true},
      {"bottleneck 1x1", 2, 8, 8, 256, 64, 1, 1, 0, true},
      {"odd channels", 3, 9, 7, 5, 6, 3, 1, 1, false},
      {"odd stride 2", 2, 11, 11, 13, 7, 3, 2, 1, false},
      {"1x1 odd", 2, 6, 6, 10, 12, 1, 1, 0, false},
      {"5x5", 1, 5, 5, 3, 2, 5, 1, 2, false},
      {"tiny test network", 6, 8, 8, 3, 3, 3, 1, 1, false},
      {"3x3 odd size, 32 channels", 3, 9, 11, 32, 48, 3, 1, 1, false},
      {"3x3 at 2x2, 64 channels", 4, 2, 2, 64, 64, 3, 1, 1, true},
      {"1x1 stride 2, 4 channels (tiny test network's shortcut)", 4, 8, 8, 4, 8, 1, 2, 0, false},
      {"1x1 stride 2, 12 channels", 2, 7, 7, 12, 20, 1, 2, 0, false},
      {"1x1 stride 2, 16 channels", 2, 8, 8, 16, 32, 1, 2, 0, false},
      {"3x3 stride 2, 4 channels", 4, 8, 8, 4, 8, 3, 2, 1, false},
  };
  const cpu::ConvAlgorithm saved = cpu::conv_algorithm();
  for (const cpu::ConvAlgorithm algorithm :
       {cpu::ConvAlgorithm::onednn_direct, cpu::ConvAlgorithm::onednn_winograd}) {
    const bool winograd = algorithm == cpu::ConvAlgorithm::onednn_winograd;
    cpu::set_conv_algorithm(algorithm);
    std::mt19937_64 gen(11);
    for (const Case& c : cases) {
      cpu::ConvGeom g{c.n, c.h, c.w, c.c, c.k, c.r, c.r, 0, 0, c.stride, c.pad};
      g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
      g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
      const std::string impl = cpu::onednn_conv2d_implementation(g);
      INFO((winograd ? "winograd " : "direct ")
           << c.what << ": input [" << g.N << ", " << g.H << ", " << g.W << ", " << g.C << "], weight ["
           << g.K << ", " << g.R << ", " << g.S << ", " << g.C << "], stride " << g.stride
           << ", oneDNN picks " << impl);
      const size_t nx = g.N * g.H * g.W * g.C, nw = g.K * g.R * g.S * g.C, ny = g.N * g.P * g.Q * g.K;
      const std::vector<double> x = random_vector(nx, gen), w = random_vector(nw, gen),
                                dy = random_vector(ny, gen);
      std::vector<double> y_ref(ny), dx_ref(nx), dw_ref(nw);
      cpu::conv2d_forward(x.data(), w.data(), y_ref.data(), g);
      cpu::conv2d_backward_data(dy.data(), w.data(), dx_ref.data(), g);
      cpu::conv2d_backward_filter(dy.data(), x.data(), dw_ref.data(), g);

      const std::vector<float> xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
      const float nan = std::numeric_limits<float>::quiet_NaN();
      constexpr size_t guard = 256;  // floats after each output that no kernel may write
      constexpr float sentinel = 12345.0f;
      std::vector<float> y(ny + guard, nan), dx(nx + guard, nan), dw(nw + guard, nan);
      for (std::vector<float>* out : {&y, &dx, &dw}) std::fill(out->end() - guard, out->end(), sentinel);
      const bool fwd = cpu::onednn_conv2d_forward(xf.data(), wf.data(), y.data(), g);
      const bool bwd_data = cpu::onednn_conv2d_backward_data(dyf.data(), wf.data(), dx.data(), g);
      const bool bwd_filter = cpu::onednn_conv2d_backward_filter(dyf.data(), xf.data(), dw.data(), g);
      auto untouched = [&](const std::vector<float>& out) {
        return std::all_of(out.end() - guard, out.end(), [&](float v) { return v == sentinel; });
      };
      CHECK(untouched(y));
      CHECK(untouched(dx));
      CHECK(untouched(dw));
      y.resize(ny), dx.resize(nx), dw.resize(nw);
      if (c.resnet) {
        CHECK(fwd);
        CHECK(bwd_data);
        CHECK(bwd_filter);
        // ResNet's large 3x3 stride-1 convolutions must get Winograd when it is asked for, on all three
        // passes; small ones (2x2 outputs) must keep the direct kernels.
        const int64_t area = g.P * g.Q;  // the documented rule: 32+ channels at 8x8+, 128+ at 4x4+
        // (oneDNN's Winograd kernel, jit_wino_4x3, exists only with AVX-512.)
        const bool expect_winograd = winograd && __builtin_cpu_supports("avx512f") && c.r == 3 &&
                                     c.stride == 1 &&
                                     ((c.c >= 32 && area >= 64) || (c.c >= 128 && area >= 16));
        size_t wino_passes = 0;
        for (size_t at = impl.find("wino"); at != std::string::npos; at = impl.find("wino", at + 1))
          ++wino_passes;
        CHECK(wino_passes == (expect_winograd ? 3u : 0u));
      }
      // float32 inputs rounded from the float64 ones: the results differ by float32 arithmetic only —
      // accumulation order for the direct kernels, plus the Winograd transforms' rounding (measured here
      // up to ~2e-6 relative; the bound leaves room for other CPUs' kernels).
      const double tol = winograd ? 1e-5 : 2e-6;
      if (fwd) CHECK(relative_error(y, y_ref) < tol);
      if (bwd_data) CHECK(relative_error(dx, dx_ref) < tol);
      if (bwd_filter) CHECK(relative_error(dw, dw_ref) < tol);
    }
  }
  cpu::set_conv_algorithm(saved);
}

TEST_CASE("convolutions with one output position per image match the im2col reference", "[conv]") {
  // P = Q = 1 (engine/cpu/conv.cpp, single_position): one matrix product over the taps that read the
  // input, taken by every algorithm but im2col. Against im2col in float64: the taps reading all of the
  // input or part of it, all of the kernel or part of it, and none at all (the output then zero). Outputs are
  // poisoned with NaN first: every element must be written, the zeros too.
  if (!cpu::onednn_available()) {
    WARN(
        "skipped: without oneDNN every convolution takes the im2col path (scripts/setup.sh installs "
        "libdnnl-dev; reconfigure)");
    return;
  }
  struct Geometry {
    const char* what;
    int64_t n, h, w, c, k, r, s, stride, pad;
  };
  const Geometry cases[] = {
      {"1x1 input, 3x3 padded by 1 (one tap: the default job's last stage)", 3, 1, 1, 5, 7, 3, 3, 1, 1},
      {"2x2 input, 3x3 stride 2 padded by 1 (four taps)", 2, 2, 2, 6, 4, 3, 3, 2, 1},
      {"3x3 input, 3x3 unpadded (every tap, all the input)", 2, 3, 3, 3, 5, 3, 3, 1, 0},
      {"3x3 input, 1x1 stride 4 (one pixel of the input)", 3, 3, 3, 4, 6, 1, 1, 4, 0},
      {"4x4 input, 3x3 stride 2 (every tap, part of the input)", 2, 4, 4, 3, 2, 3, 3, 2, 0},
      {"2x3 input, 3x3 stride 3 padded by 1 (part of the kernel and of the input)", 2, 2, 3, 3, 4, 3, 3, 3,
       1},
      {"1x1 input, 1x1 stride 3 padded by 1 (no tap reads the input)", 2, 1, 1, 3, 2, 1, 1, 3, 1},
  };
  const cpu::ConvAlgorithm saved = cpu::conv_algorithm();
  std::mt19937_64 gen(17);
  for (const Geometry& c : cases) {
    INFO(c.what);
    cpu::ConvGeom g{c.n, c.h, c.w, c.c, c.k, c.r, c.s, 0, 0, c.stride, c.pad};
    g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
    g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
    REQUIRE(g.P == 1);
    REQUIRE(g.Q == 1);
    const size_t nx = g.N * g.H * g.W * g.C, nw = g.K * g.R * g.S * g.C, ny = g.N * g.K;
    const std::vector<double> x = random_vector(nx, gen), w = random_vector(nw, gen),
                              dy = random_vector(ny, gen);
    cpu::set_conv_algorithm(cpu::ConvAlgorithm::im2col);
    std::vector<double> y_ref(ny), dx_ref(nx), dw_ref(nw);
    cpu::conv2d_forward(x.data(), w.data(), y_ref.data(), g);
    cpu::conv2d_backward_data(dy.data(), w.data(), dx_ref.data(), g);
    cpu::conv2d_backward_filter(dy.data(), x.data(), dw_ref.data(), g);

    cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_direct);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> y(ny, nan), dx(nx, nan), dw(nw, nan);
    cpu::conv2d_forward(x.data(), w.data(), y.data(), g);
    cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), g);
    cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), g);
    const auto same = [](const std::vector<double>& a, const std::vector<double>& b) {
      double diff = 0, ref = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
        diff = std::max(diff, std::abs(a[i] - b[i]));
        ref = std::max(ref, std::abs(b[i]));
      }
      return diff / std::max(ref, 1e-300);
    };
    CHECK(same(y, y_ref) < 1e-13);  // the same products, summed in another order (and without zeros)
    CHECK(same(dx, dx_ref) < 1e-13);
    CHECK(same(dw, dw_ref) < 1e-13);

    const std::vector<float> xf = to_float(x), wf = to_float(w), dyf = to_float(dy);
    const float nanf = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> yf(ny, nanf), dxf(nx, nanf), dwf(nw, nanf);
    cpu::conv2d_forward(xf.data(), wf.data(), yf.data(), g);
    cpu::conv2d_backward_data(dyf.data(), wf.data(), dxf.data(), g);
    cpu::conv2d_backward_filter(dyf.data(), xf.data(), dwf.data(), g);
    if (std::all_of(y_ref.begin(), y_ref.end(), [](double v) { return v == 0; })) {
      // no tap reads the input: everything is zero
      CHECK(std::all_of(yf.begin(), yf.end(), [](float v) { return v == 0; }));
      CHECK(std::all_of(dxf.begin(), dxf.end(), [](float v) { return v == 0; }));
      CHECK(std::all_of(dwf.begin(), dwf.end(), [](float v) { return v == 0; }));
    } else {
      CHECK(relative_error(yf, y_ref) < 2e-6);
      CHECK(relative_error(dxf, dx_ref) < 2e-6);
      CHECK(relative_error(dwf, dw_ref) < 2e-6);
    }
  }
  cpu::set_conv_algorithm(saved);
}

TEST_CASE("the float32 conv2d entry points honour the algorithm setting", "[conv][onednn]") {
  // Same inputs through both algorithms: close, and each setting stays in force until changed.
  const cpu::ConvAlgorithm saved = cpu::conv_algorithm();
  cpu::ConvGeom g{2, 12, 12, 16, 24, 3, 3, 12, 12, 1, 1};
  std::mt19937_64 gen(5);
  const std::vector<float> x = to_float(random_vector(g.N * g.H * g.W * g.C, gen));
  const std::vector<float> w = to_float(random_vector(g.K * g.R * g.S * g.C, gen));
  std::vector<float> a(g.N * g.P * g.Q * g.K), b(a.size());
  cpu::set_conv_algorithm(cpu::ConvAlgorithm::im2col);
  CHECK(cpu::conv_algorithm() == cpu::ConvAlgorithm::im2col);
  cpu::conv2d_forward(x.data(), w.data(), a.data(), g);
  if (cpu::onednn_available()) {
    cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_winograd);
    CHECK(cpu::conv_algorithm() == cpu::ConvAlgorithm::onednn_winograd);
    cpu::conv2d_forward(x.data(), w.data(), b.data(), g);
    const std::vector<double> ad(a.begin(), a.end());
    CHECK(relative_error(b, ad) < 2e-6);
  } else {
    CHECK_THROWS_WITH(cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_direct),
                      Catch::Contains("no oneDNN"));
  }
  cpu::set_conv_algorithm(saved);
}

TEST_CASE("bf16 products: oneDNN's bf16 kernels equal im2col on bf16-rounded operands",
          "[conv][onednn][bf16]") {
  // ConvGeom::bf16 means: the two operands of the products rounded to bf16 (nearest even; backward filter
  // only where cpu::bf16_backward_filter says), the sums in float32. The im2col path reproduces that on
  // rounded copies, so the oneDNN bf16 passes (AMX or AVX512-BF16 where the CPU has them) must agree with it
  // to float32 summation-order rounding (2e-6 relative, as the float32 kernels), and both must differ from
  // the float32 products by about bf16's rounding (2^-9 relative per operand) — the rounding really happened.
  if (!cpu::onednn_available()) {
    WARN("skipped: this build has no oneDNN (libdnnl-dev)");
    return;
  }
  const cpu::ConvAlgorithm saved = cpu::conv_algorithm();
  std::mt19937_64 gen(11);
  if (!cpu::bf16_kernels_available()) {
    // A CPU without oneDNN bf16 kernels (oneDNN 2.6: below AVX-512): the bf16 passes must still run, as
    // float32 convolutions on bf16-rounded copies (oneDNN's float32 kernels under onednn_direct, Eigen under
    // im2col: the same products, summed in another order), and say so.
    cpu::ConvGeom g{2, 6, 6, 16, 8, 3, 3, 6, 6, 1, 1};
    g.bf16 = true;
    const std::vector<float> x = to_float(random_vector(g.N * g.H * g.W * g.C, gen));
    const std::vector<float> w = to_float(random_vector(g.K * g.R * g.S * g.C, gen));
    const std::vector<float> dy = to_float(random_vector(g.N * g.P * g.Q * g.K, gen));
    auto passes = [&](cpu::ConvAlgorithm a) {
      cpu::set_conv_algorithm(a);
      std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw(w.size(), NAN);
      cpu::conv2d_forward(x.data(), w.data(), y.data(), g);
      cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), g);
      cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), g);
      return std::array<std::vector<float>, 3>{y, dx, dw};
    };
    const auto onednn = passes(cpu::ConvAlgorithm::onednn_direct),
               reference = passes(cpu::ConvAlgorithm::im2col);
    for (int p = 0; p < 3; ++p)
      CHECK(relative_error(onednn[p], std::vector<double>(reference[p].begin(), reference[p].end())) < 2e-6);
    cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_direct);
    CHECK(cpu::onednn_conv2d_implementation(g).find("no oneDNN bf16 kernels") != std::string::npos);
    cpu::set_conv_algorithm(saved);
    WARN(
        "skipped the oneDNN bf16 kernel checks: this CPU has no oneDNN bf16 kernels (oneDNN 2.6 needs "
        "AVX-512); checked that the bf16 passes run as float32 convolutions on rounded copies instead");
    return;
  }
  for (const Case& c : {Case{"resnet 3x3", 4, 8, 8, 64, 64, 3, 1, 1, true},
                        Case{"resnet 3x3/2", 4, 8, 8, 64, 128, 3, 2, 1, true},
                        Case{"resnet 1x1/2 downsample", 4, 8, 8, 64, 128, 1, 2, 0, true},
                        Case{"cifar stem, 3 channels", 2, 9, 9, 3, 16, 3, 1, 1, true},
                        Case{"odd channels", 3, 7, 5, 13, 11, 3, 1, 1, false},
                        // im2col + bf16 matmul passes (cpu::bf16_matmul_pass): ResNet's last stage at 4x4
                        // (backward data as the transposed convolution), no padding, a non-square image
                        Case{"resnet last stage 3x3 at 4x4", 2, 4, 4, 32, 48, 3, 1, 1, true},
                        Case{"3x3 without padding", 2, 5, 5, 16, 8, 3, 1, 0, false},
                        Case{"3x3 on 3x5 images", 3, 3, 5, 13, 11, 3, 1, 1, false}}) {
    INFO(c.what);
    cpu::ConvGeom g{c.n, c.h, c.w, c.c, c.k, c.r, c.r, 0, 0, c.stride, c.pad};
    g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
    g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
    {
      // The matmul path serves exactly the passes its rule names (and the rule names some here).
      cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_direct);
      cpu::ConvGeom b = g;
      b.bf16 = true;
      const std::string impl = cpu::onednn_conv2d_implementation(b);
      INFO("implementations: " << impl);
      std::vector<std::string> parts;
      for (size_t at = 0, next; at <= impl.size(); at = next + 3) {
        next = impl.find(" / ", at);
        if (next == std::string::npos) next = impl.size();
        parts.push_back(impl.substr(at, next - at));
      }
      REQUIRE(parts.size() == 3);
      const cpu::ConvPass pass_of[] = {cpu::ConvPass::forward, cpu::ConvPass::backward_data,
                                       cpu::ConvPass::backward_filter};
      for (int p = 0; p < 3; ++p)
        CHECK((parts[p].find("matmul") != std::string::npos) == cpu::bf16_matmul_pass(b, pass_of[p]));
    }
    const std::vector<float> x = to_float(random_vector(g.N * g.H * g.W * g.C, gen));
    const std::vector<float> w = to_float(random_vector(g.K * g.R * g.S * g.C, gen));
    const std::vector<float> dy = to_float(random_vector(g.N * g.P * g.Q * g.K, gen));
    // forward, backward data, backward filter under `a` with products in bf16 or float32
    auto passes = [&](cpu::ConvAlgorithm a, bool bf16) {
      cpu::set_conv_algorithm(a);
      cpu::ConvGeom h = g;
      h.bf16 = bf16;
      std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw(w.size(), NAN);
      cpu::conv2d_forward(x.data(), w.data(), y.data(), h);
      cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), h);
      cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), h);
      return std::array<std::vector<float>, 3>{y, dx, dw};
    };
    const auto reference = passes(cpu::ConvAlgorithm::im2col, true);
    const auto onednn = passes(cpu::ConvAlgorithm::onednn_direct, true);
    const auto fp32 = passes(cpu::ConvAlgorithm::im2col, false);
    g.bf16 = true;
    for (int p = 0; p < 3; ++p) {
      INFO("pass " << p << " (forward, backward data, backward filter)");
      const std::vector<double> ref(reference[p].begin(), reference[p].end());
      CHECK(relative_error(onednn[p], ref) < 2e-6);
      const double rounding = relative_error(fp32[p], ref);
      if (p < 2 || cpu::bf16_backward_filter(g)) {
        CHECK(rounding > 1e-4);
        CHECK(rounding < 1e-2);
      } else {
        CHECK(rounding == 0);  // this geometry's backward filter stays float32 (bf16_backward_filter)
      }
    }
    g.bf16 = false;
    if (c.resnet) {
      cpu::set_conv_algorithm(cpu::ConvAlgorithm::onednn_direct);
      g.bf16 = true;
      const std::string impl = cpu::onednn_conv2d_implementation(g);
      INFO("oneDNN implementations: " << impl);
      CHECK(impl.find("ref") == std::string::npos);
      // The bf16 kernels where the CPU has bf16 units (this project's development machine: AMX).
      if (__builtin_cpu_supports("avx512bf16")) CHECK(impl.find("bf16") != std::string::npos);
    }
  }
  cpu::set_conv_algorithm(saved);
}

TEST_CASE(
    "bf16 products in linear layers: the 1x1 convolution's bf16 path equals float products on rounded "
    "operands",
    "[dense][bf16]") {
  // ops::linear with LinearParams::bf16 (the heads' layers when train.precision = "bf16") rounds x and w
  // (forward), dy and w (input gradient), dy and x (weight gradient) to bf16 and sums in float32; the bias
  // and its gradient stay float32. Reference: the float32 linear on rounded copies (Eigen), to float32
  // summation order (2e-6 relative); and the rounding must show against the float32 products (2^-9 relative
  // per operand).
  std::mt19937_64 gen(5);
  const int64_t N = 13, in = 37, out = 21;
  const std::vector<float> x = to_float(random_vector(N * in, gen)),
                           w = to_float(random_vector(out * in, gen)), b = to_float(random_vector(out, gen)),
                           dy = to_float(random_vector(N * out, gen));
  auto rounded = [](std::vector<float> v) {
    for (float& f : v) f = byol::bf16_to_float(byol::float_to_bf16(f));
    return v;
  };
  const std::vector<float> xr = rounded(x), wr = rounded(w), dyr = rounded(dy);
  for (const cpu::ConvAlgorithm a : {cpu::ConvAlgorithm::im2col, cpu::ConvAlgorithm::onednn_winograd}) {
    if (a != cpu::ConvAlgorithm::im2col && !cpu::onednn_available()) continue;
    INFO("algorithm " << static_cast<int>(a));
    const cpu::ConvAlgorithm saved = cpu::conv_algorithm();
    cpu::set_conv_algorithm(a);
    std::vector<float> y(N * out), dx(N * in), dw(out * in), db(out);
    cpu::linear_forward_bf16(x.data(), w.data(), b.data(), y.data(), N, in, out);
    cpu::linear_backward_bf16(dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), N, in, out);
    cpu::set_conv_algorithm(saved);
    std::vector<float> y_ref(N * out), dx_ref(N * in), dw_ref(out * in), db_ref(out), y32(N * out);
    cpu::linear_forward(xr.data(), wr.data(), b.data(), y_ref.data(), N, in, out);
    cpu::linear_backward<float>(dyr.data(), xr.data(), wr.data(), dx_ref.data(), dw_ref.data(), nullptr, N,
                                in, out);
    cpu::linear_backward<float>(dy.data(), x.data(), w.data(), nullptr, nullptr, db_ref.data(), N, in, out);
    cpu::linear_forward(x.data(), w.data(), b.data(), y32.data(), N, in, out);
    auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
    CHECK(relative_error(y, as_double(y_ref)) < 2e-6);
    CHECK(relative_error(dx, as_double(dx_ref)) < 2e-6);
    CHECK(relative_error(dw, as_double(dw_ref)) < 2e-6);
    CHECK(relative_error(db, as_double(db_ref)) < 2e-6);
    const double rounding = relative_error(y32, as_double(y_ref));
    CHECK(rounding > 1e-4);
    CHECK(rounding < 1e-2);
  }
  // Through the op: the flag reaches the bf16 path, and is refused where it cannot run.
  const Tensor tx = Tensor::from_vector(x, {N, in}), tw = Tensor::from_vector(w, {out, in}),
               tb = Tensor::from_vector(b, {out});
  std::vector<float> y(N * out);
  cpu::linear_forward_bf16(x.data(), w.data(), b.data(), y.data(), N, in, out);
  CHECK(ops::linear(tx, tw, tb, {true}).to_vector<float>() == y);
  CHECK_THROWS_WITH(ops::linear(tx.to(DType::f64), tw.to(DType::f64), Tensor(), {true}),
                    Catch::Contains("bf16 products need float32 input"));
}
