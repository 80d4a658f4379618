// The per-pixel formulas of engine/math/augment.h against independent formulas written here.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "engine/math/augment.h"

using namespace byol::math;

namespace {

// Textbook RGB <-> HSV (Smith 1978) in double, hue in turns.
struct Hsv {
  double h, s, v;
};

Hsv ref_rgb_to_hsv(double r, double g, double b) {
  const double mx = std::max({r, g, b}), mn = std::min({r, g, b}), d = mx - mn;
  double h = 0;
  if (d > 0) {
    if (mx == r)
      h = std::fmod((g - b) / d + 6.0, 6.0);
    else if (mx == g)
      h = (b - r) / d + 2.0;
    else
      h = (r - g) / d + 4.0;
  }
  return {h / 6.0, mx > 0 ? d / mx : 0.0, mx};
}

Rgb ref_hsv_to_rgb(Hsv c) {  // by sector of the colour circle
  const double h6 = c.h * 6.0, sector = std::floor(h6), f = h6 - sector;
  const double p = c.v * (1 - c.s), q = c.v * (1 - c.s * f), t = c.v * (1 - c.s * (1 - f));
  switch (int(sector) % 6) {
    case 0:
      return {float(c.v), float(t), float(p)};
    case 1:
      return {float(q), float(c.v), float(p)};
    case 2:
      return {float(p), float(c.v), float(t)};
    case 3:
      return {float(p), float(q), float(c.v)};
    case 4:
      return {float(t), float(p), float(c.v)};
    default:
      return {float(c.v), float(p), float(q)};
  }
}

double clip(double x) {
  return std::min(1.0, std::max(0.0, x));
}

}  // namespace

TEST_CASE("hue rotation by a third of a turn maps red to green to blue", "[augment_math]") {
  const Rgb red = adjust_hue({1, 0, 0}, 1.0f / 3.0f), green = adjust_hue({0, 1, 0}, 1.0f / 3.0f),
            blue = adjust_hue({0, 0, 1}, 1.0f / 3.0f);
  CHECK(red.r == Approx(0).margin(1e-6));
  CHECK(red.g == Approx(1));
  CHECK(red.b == Approx(0).margin(1e-6));
  CHECK(green.b == Approx(1));
  CHECK(green.r == Approx(0).margin(1e-6));
  CHECK(blue.r == Approx(1));
  CHECK(blue.g == Approx(0).margin(1e-6));
  const Rgb back = adjust_hue({0, 1, 0}, -1.0f / 3.0f);  // negative deltas wrap
  CHECK(back.r == Approx(1));
  CHECK(back.g == Approx(0).margin(1e-6));
}

TEST_CASE("hue and saturation agree with an HSV round trip", "[augment_math]") {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 2000; ++i) {
    const double r = u(gen), g = u(gen), b = u(gen);
    const double delta = u(gen) - 0.5, factor = 2.5 * u(gen);
    Hsv hsv = ref_rgb_to_hsv(r, g, b);
    hsv.h = std::fmod(hsv.h + delta + 1.0, 1.0);
    const Rgb want_hue = ref_hsv_to_rgb(hsv);
    const Rgb got_hue = adjust_hue({float(r), float(g), float(b)}, float(delta));
    CHECK(got_hue.r == Approx(want_hue.r).margin(2e-5));
    CHECK(got_hue.g == Approx(want_hue.g).margin(2e-5));
    CHECK(got_hue.b == Approx(want_hue.b).margin(2e-5));

    Hsv sat = ref_rgb_to_hsv(r, g, b);
    sat.s = clip(sat.s * factor);
    const Rgb want_sat = ref_hsv_to_rgb(sat);
    const Rgb got_sat = adjust_saturation({float(r), float(g), float(b)}, float(factor));
    CHECK(got_sat.r == Approx(want_sat.r).margin(2e-5));
    CHECK(got_sat.g == Approx(want_sat.g).margin(2e-5));
    CHECK(got_sat.b == Approx(want_sat.b).margin(2e-5));
  }
}

TEST_CASE("saturation 0 gives the value (max channel) gray; gray pixels are unchanged", "[augment_math]") {
  const Rgb c = adjust_saturation({0.2f, 0.7f, 0.4f}, 0.0f);
  CHECK(c.r == Approx(0.7f));
  CHECK(c.g == Approx(0.7f));
  CHECK(c.b == Approx(0.7f));
  const Rgb g = adjust_hue({0.3f, 0.3f, 0.3f}, 0.25f);
  CHECK(g.r == 0.3f);
  CHECK(g.b == 0.3f);
}

TEST_CASE("brightness, contrast, grayscale and solarize follow their formulas", "[augment_math]") {
  CHECK(adjust_brightness(0.5f, 0.25f) == Approx(0.75f));
  CHECK(adjust_brightness(0.9f, 0.3f) == 1.0f);  // clipped
  CHECK(adjust_brightness(0.1f, -0.3f) == 0.0f);
  CHECK(adjust_contrast(0.7f, 0.5f, 1.5f) == Approx(0.8f));   // (0.7 - 0.5) * 1.5 + 0.5
  CHECK(adjust_contrast(0.2f, 0.4f, 0.5f) == Approx(0.3f));   // (0.2 - 0.4) * 0.5 + 0.4
  CHECK(adjust_contrast(0.95f, 0.5f, 1.4f) == Approx(1.0f));  // 1.13 clipped
  CHECK(grayscale({1, 0, 0}) == Approx(0.2989f));
  CHECK(grayscale({0, 1, 0}) == Approx(0.5870f));
  CHECK(grayscale({0, 0, 1}) == Approx(0.1140f));
  CHECK(grayscale({0.5f, 0.25f, 1.0f}) == Approx(0.2989 * 0.5 + 0.5870 * 0.25 + 0.1140));
  CHECK(solarize(0.3f, 0.5f) == 0.3f);
  CHECK(solarize(0.5f, 0.5f) == 0.5f);
  CHECK(solarize(0.8f, 0.5f) == Approx(0.2f));
  CHECK(solarize(1.0f, 0.5f) == 0.0f);
  CHECK(normalize(0.7f, 0.5f, 1.0f / 0.25f) == Approx(0.8f));
}

TEST_CASE("bicubic (Keys, a = -0.5) weights interpolate and sum to one", "[augment_math]") {
  CHECK(cubic_weight(0) == 1.0f);
  CHECK(cubic_weight(1) == Approx(0).margin(1e-7));
  CHECK(cubic_weight(-2) == Approx(0).margin(1e-7));
  CHECK(cubic_weight(2.5f) == 0.0f);
  // Keys' kernel: 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1], -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on [1, 2].
  CHECK(cubic_weight(0.5f) == Approx(0.5625));
  CHECK(cubic_weight(-1.5f) == Approx(-0.0625));
  CHECK(cubic_weight(0.3f) == Approx(1.5 * 0.027 - 2.5 * 0.09 + 1));
  CHECK(cubic_weight(1.2f) == Approx(-0.5 * 1.728 + 2.5 * 1.44 - 4 * 1.2 + 2));
  for (float t : {0.0f, 0.1f, 0.37f, 0.5f, 0.81f}) {
    double sum = 0;
    for (int k = -2; k <= 2; ++k) sum += cubic_weight(t - float(k));
    CHECK(sum == Approx(1.0).margin(1e-6));
  }
}

TEST_CASE("blur kernel size is about a tenth of the side: 23 taps at 224, 3 at 32", "[augment_math]") {
  CHECK(2 * blur_radius(224, 0.1f) + 1 == 23);
  CHECK(2 * blur_radius(32, 0.1f) + 1 == 3);
  CHECK(2 * blur_radius(96, 0.1f) + 1 == 9);
  CHECK(blur_radius(9, 0.1f) == 0);
  CHECK(gaussian_weight(0, 1.3f) == 1.0f);
  CHECK(gaussian_weight(2, 1.5f) == Approx(std::exp(-4.0 / (2 * 2.25))));
}

TEST_CASE("reflect padding mirrors without repeating the edge, at any distance", "[augment_math]") {
  for (int n : {1, 2, 3, 5, 8}) {
    for (int i = -20; i < 30; ++i) {
      int want = i;  // reflect step by step
      while (n > 1 && (want < 0 || want >= n)) want = want < 0 ? -want : 2 * (n - 1) - want;
      if (n == 1) want = 0;
      CHECK(reflect_index(i, n) == want);
    }
  }
}

TEST_CASE("every resample tap, and the nearest pixel, lies in the crop window resample_window gives",
          "[augment_math]") {
  // The CUDA kernel resamples the window's rows horizontally into scratch and reads the vertical taps
  // there, at row - lo: a tap outside [lo, hi) would read another view's scratch.
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  int checked = 0;
  for (int trial = 0; trial < 500; ++trial) {
    const int src = 1 + static_cast<int>(u(gen) * 700), out = 1 + static_cast<int>(u(gen) * 300);
    const float length = std::max(0.3f, u(gen) * static_cast<float>(src));
    const float origin = u(gen) * (static_cast<float>(src) - length);
    int lo = 0, hi = 0;
    resample_window(origin, length, src, lo, hi);
    REQUIRE(0 <= lo);
    REQUIRE(lo < hi);
    REQUIRE(hi <= src);
    for (int o = 0; o < out; ++o) {
      const ResampleTaps t = resample_taps(origin, length, src, out, o);
      INFO("src " << src << " out " << out << " origin " << origin << " length " << length << " o " << o);
      if (t.count > 0) {
        CHECK(t.first >= lo);
        CHECK(t.first + t.count <= hi);
      }
      CHECK(t.nearest() >= lo);
      CHECK(t.nearest() < hi);
      ++checked;
    }
  }
  CHECK(checked > 20000);
}
