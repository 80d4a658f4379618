// The augmentation steps against independent formulas, and the sampled parameters' distributions
// against the recipe.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <map>
#include <set>

#include "data/augment.h"
#include "data_test_util.h"

using namespace byol::data;

namespace {

std::vector<float> float_image(int h, int w, int c, auto f) {
  std::vector<float> img(size_t(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) img[(size_t(y) * w + x) * c + k] = float(f(y, x, k));
  return img;
}

float at(const std::vector<float>& img, int w, int y, int x, int c) {
  return img[(size_t(y) * w + x) * 3 + c];
}

// Keys' cubic, written out again for the expected values.
double keys(double x) {
  x = std::fabs(x);
  if (x < 1) return 1.5 * x * x * x - 2.5 * x * x + 1;
  if (x < 2) return -0.5 * x * x * x + 2.5 * x * x - 4 * x + 2;
  return 0;
}

}  // namespace

TEST_CASE("resize_crop at scale 1 copies the crop box exactly; flip mirrors it", "[augment]") {
  const auto src = float_image(10, 12, 3, [](int y, int x, int c) { return (y * 12 + x + 0.3 * c) / 130.0; });
  AugmentWorkspace ws;
  std::vector<float> out(5 * 6 * 3), flipped(5 * 6 * 3);
  const FloatImageView v{src.data(), 10, 12, 3};
  resize_crop(v, 2, 3, 5, 6, false, 5, 6, out.data(), ws);
  resize_crop(v, 2, 3, 5, 6, true, 5, 6, flipped.data(), ws);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c) {
        const float want = src[((y + 2) * 12 + (x + 3)) * 3 + c];
        CHECK(at(out, 6, y, x, c) == Approx(want).margin(1e-6));
        CHECK(at(flipped, 6, y, 5 - x, c) == Approx(want).margin(1e-6));
      }
}

TEST_CASE("resize_crop keeps constant images constant and linear ramps linear, up and down", "[augment]") {
  AugmentWorkspace ws;
  for (auto [out_h, out_w] : {std::pair{7, 9}, std::pair{40, 50}}) {
    const auto flat = float_image(20, 24, 3, [](int, int, int c) { return 0.25 + 0.2 * c; });
    std::vector<float> out(size_t(out_h) * out_w * 3);
    resize_crop(FloatImageView{flat.data(), 20, 24, 3}, 0, 0, 20, 24, false, out_h, out_w, out.data(), ws);
    for (size_t i = 0; i < out.size(); ++i) CHECK(out[i] == Approx(0.25 + 0.2 * (i % 3)).margin(1e-6));
    // f(x) = x / 100 (pixel centres at x + 0.5): away from the borders the value at output column o is
    // the source position (o + 0.5) * scale - 0.5. Keys' kernel reproduces linear functions exactly when
    // upsampling; stretched for antialiasing (PIL's filter) it does so to within 0.005 pixel.
    const auto ramp = float_image(20, 24, 3, [](int, int x, int) { return x / 100.0; });
    resize_crop(FloatImageView{ramp.data(), 20, 24, 3}, 0, 0, 20, 24, false, out_h, out_w, out.data(), ws);
    const double scale = 24.0 / out_w;
    const double margin_px = 2.0 * std::max(scale, 1.0) + 1;
    for (int o = 0; o < out_w; ++o) {
      const double pos = (o + 0.5) * scale - 0.5;
      if (pos < margin_px || pos > 23 - margin_px) continue;
      CHECK(at(out, out_w, out_h / 2, o, 1) == Approx(pos / 100.0).margin(scale > 1 ? 5e-5 : 1e-6));
    }
  }
}

TEST_CASE("resize_crop upsampling is Keys bicubic interpolation", "[augment]") {
  // 8 x 8 source, 2x upsampling: output o samples source position (o + 0.5) / 2 - 0.5.
  const auto src = float_image(
      8, 8, 3, [](int y, int x, int c) { return std::fmod(0.37 * x + 0.11 * y * y + 0.2 * c, 1.0); });
  std::vector<float> out(16 * 16 * 3);
  AugmentWorkspace ws;
  resize_crop(FloatImageView{src.data(), 8, 8, 3}, 0, 0, 8, 8, false, 16, 16, out.data(), ws);
  for (int oy = 4; oy < 12; ++oy)
    for (int ox = 4; ox < 12; ++ox) {
      const double sy = (oy + 0.5) / 2 - 0.5, sx = (ox + 0.5) / 2 - 0.5;
      double want = 0;
      for (int j = int(std::floor(sy)) - 1; j <= int(std::floor(sy)) + 2; ++j)
        for (int i = int(std::floor(sx)) - 1; i <= int(std::floor(sx)) + 2; ++i)
          want += keys(sy - j) * keys(sx - i) * src[(j * 8 + i) * 3];
      CHECK(at(out, 16, oy, ox, 0) == Approx(std::min(1.0, std::max(0.0, want))).margin(1e-5));
    }
}

TEST_CASE("uint8 sources give the float result of value / 255; gray sources fill all three channels",
          "[augment]") {
  const auto img = byol::data::testing::smooth_image(9, 11, 3);
  std::vector<float> as_float(img.pixels.begin(), img.pixels.end());
  for (float& v : as_float) v /= 255.0f;
  std::vector<float> a(6 * 7 * 3), b(6 * 7 * 3);
  AugmentWorkspace ws;
  resize_crop(img.view(), 1, 2, 7, 8, true, 6, 7, a.data(), ws);
  resize_crop(FloatImageView{as_float.data(), 9, 11, 3}, 1, 2, 7, 8, true, 6, 7, b.data(), ws);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-6));

  const auto gray = byol::data::testing::smooth_image(9, 11, 1);
  a.resize(9 * 11 * 3);
  resize_crop(gray.view(), 0, 0, 9, 11, false, 9, 11, a.data(), ws);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 11; ++x)
      for (int c = 0; c < 3; ++c)
        CHECK(at(a, 11, y, x, c) == Approx(gray.pixels[y * 11 + x] / 255.0).margin(1e-6));
}

TEST_CASE("Gaussian blur: kernel sums to one, constant images stay, an impulse spreads as the kernel",
          "[augment]") {
  for (float sigma : {0.1f, 0.7f, 2.0f}) {
    const std::vector<float> k = gaussian_kernel(11, sigma);
    REQUIRE(k.size() == 23);
    double sum = 0;
    for (int i = 0; i < 23; ++i) {
      sum += k[i];
      double z = 0;
      for (int j = -11; j <= 11; ++j) z += std::exp(-j * j / (2.0 * sigma * sigma));
      CHECK(k[i] == Approx(std::exp(-(i - 11) * (i - 11) / (2.0 * sigma * sigma)) / z).margin(1e-7));
    }
    CHECK(sum == Approx(1.0).margin(1e-6));
  }
  AugmentWorkspace ws;
  auto flat = float_image(16, 16, 3, [](int, int, int c) { return 0.1 + 0.3 * c; });
  gaussian_blur(flat.data(), 16, 16, 5, 1.7f, ws);
  for (size_t i = 0; i < flat.size(); ++i) CHECK(flat[i] == Approx(0.1 + 0.3 * (i % 3)).margin(1e-6));

  const float sigma = 1.2f;
  const int r = 3;
  auto impulse = float_image(15, 15, 3, [](int y, int x, int) { return y == 7 && x == 7 ? 1.0 : 0.0; });
  gaussian_blur(impulse.data(), 15, 15, r, sigma, ws);
  double z = 0;
  for (int j = -r; j <= r; ++j) z += std::exp(-j * j / (2.0 * sigma * sigma));
  for (int y = 0; y < 15; ++y)
    for (int x = 0; x < 15; ++x) {
      const int dy = y - 7, dx = x - 7;
      const double want = (std::abs(dy) <= r && std::abs(dx) <= r)
                              ? std::exp(-(dy * dy + dx * dx) / (2.0 * sigma * sigma)) / (z * z)
                              : 0.0;
      CHECK(at(impulse, 15, y, x, 2) == Approx(want).margin(1e-6));
    }
}

TEST_CASE("Gaussian blur reflects at the borders", "[augment]") {
  // f depends on x only; at column x the blur is sum_t k_t f(reflect(x + t)).
  const int w = 6, r = 2;
  const float sigma = 0.9f;
  auto img = float_image(4, w, 3, [](int, int x, int) { return x * x / 30.0; });
  AugmentWorkspace ws;
  gaussian_blur(img.data(), 4, w, r, sigma, ws);
  double z = 0;
  for (int j = -r; j <= r; ++j) z += std::exp(-j * j / (2.0 * sigma * sigma));
  for (int x = 0; x < w; ++x) {
    double want = 0;
    for (int t = -r; t <= r; ++t) {
      int i = x + t;
      if (i < 0) i = -i;
      if (i >= w) i = 2 * (w - 1) - i;
      want += std::exp(-t * t / (2.0 * sigma * sigma)) / z * (i * i / 30.0);
    }
    CHECK(at(img, w, 2, x, 0) == Approx(want).margin(1e-6));
  }
}

TEST_CASE("colour jitter applies its ops in the sampled order, contrast around each channel's mean",
          "[augment]") {
  // Two pixels: a = (0.2, 0.4, 0.6), b = (0.6, 0.8, 1.0). Channel means 0.4, 0.6, 0.8.
  const std::vector<float> src = {0.2f, 0.4f, 0.6f, 0.6f, 0.8f, 1.0f};
  AugmentParams p = identity_params(1, 2);
  p.brightness = 0.1f;
  p.contrast = 2.0f;
  p.jitter_order[0] = kBrightness, p.jitter_order[1] = kContrast, p.jitter_order[2] = kSaturation,
  p.jitter_order[3] = kHue;
  std::vector<float> img = src;
  color_jitter(img.data(), 1, 2, p);
  // brightness first: a = (0.3, 0.5, 0.7), b = (0.7, 0.9, 1.0 clipped); means (0.5, 0.7, 0.85);
  // contrast x2: a = (0.1, 0.3, 0.55), b = (0.9, 1.1 -> 1, 1.15 -> 1).
  const std::vector<float> want1 = {0.1f, 0.3f, 0.55f, 0.9f, 1.0f, 1.0f};
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(want1[i]).margin(1e-6));
  std::swap(p.jitter_order[0], p.jitter_order[1]);
  img = src;
  color_jitter(img.data(), 1, 2, p);
  // contrast first (means 0.4, 0.6, 0.8): a = (0, 0.2, 0.4), b = (0.8, 1, 1.2 -> 1); then +0.1.
  const std::vector<float> want2 = {0.1f, 0.3f, 0.5f, 0.9f, 1.0f, 1.0f};
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(want2[i]).margin(1e-6));
  // contrast 0 collapses every channel to its mean
  p = identity_params(1, 2);
  p.contrast = 0.0f;
  img = src;
  color_jitter(img.data(), 1, 2, p);
  const std::vector<float> want3 = {0.4f, 0.6f, 0.8f, 0.4f, 0.6f, 0.8f};
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(want3[i]).margin(1e-6));
}

TEST_CASE("colour jitter in torchvision's convention: brightness scales, contrast around the grey mean",
          "[augment]") {
  // The expected values are torchvision 0.14's own (torchvision.transforms.functional.adjust_brightness
  // and adjust_contrast on the float tensor [[0.2, 0.6], [0.4, 0.8], [0.6, 1.0]] (C, 1, 2)), not a copy of
  // the formulas under test.
  const std::vector<float> src = {0.2f, 0.4f, 0.6f, 0.6f, 0.8f, 1.0f};
  AugmentParams p = identity_params(1, 2);
  p.jitter_style = static_cast<uint8_t>(JitterStyle::torchvision);
  p.brightness = 0.1f;  // factor 1.1
  p.contrast = 2.0f;
  p.jitter_order[0] = kBrightness, p.jitter_order[1] = kContrast, p.jitter_order[2] = kSaturation,
  p.jitter_order[3] = kHue;
  std::vector<float> img = src;
  color_jitter(img.data(), 1, 2, p);
  const std::vector<float> want1 = {0.0f, 0.266444027f, 0.706444025f, 0.706444025f, 1.0f, 1.0f};
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(want1[i]).margin(1e-6));
  std::swap(p.jitter_order[0], p.jitter_order[1]);
  img = src;
  color_jitter(img.data(), 1, 2, p);
  const std::vector<float> want2 = {0.0f, 0.260743976f, 0.700744033f, 0.700744033f, 1.0f, 1.0f};
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(want2[i]).margin(1e-6));
  // contrast 0 gives the grey mean in every channel (the official convention keeps each channel's mean)
  p = identity_params(1, 2);
  p.jitter_style = static_cast<uint8_t>(JitterStyle::torchvision);
  p.contrast = 0.0f;
  img = src;
  color_jitter(img.data(), 1, 2, p);
  for (int i = 0; i < 6; ++i) CHECK(img[i] == Approx(0.56296003f).margin(1e-6));
  // the style travels from the options into the sampled parameters
  ViewOptions o = ViewOptions::byol_view1();
  std::mt19937_64 gen(3);
  CHECK(sample_view(o, 32, 32, 32, 32, gen).jitter_style == static_cast<uint8_t>(JitterStyle::official));
  o.jitter_style = parse_jitter_style("torchvision");
  CHECK(sample_view(o, 32, 32, 32, 32, gen).jitter_style == static_cast<uint8_t>(JitterStyle::torchvision));
  CHECK_THROWS_WITH(parse_jitter_style("tf"), Catch::Contains("expected 'official' or 'torchvision', got 'tf'"));
}

TEST_CASE("apply_view composes crop, jitter, grayscale, blur, solarize and normalisation in order",
          "[augment]") {
  // A constant source keeps every spatial step trivial, so the expected colour follows by hand:
  // (0.8, 0.4, 0.2) -> brightness +0.1 -> (0.9, 0.5, 0.3) -> grayscale 0.2989*0.9 + 0.587*0.5 + 0.114*0.3
  // = 0.59821 -> blur (constant) -> solarize at 0.5 -> 0.40179 -> normalise (x - 0.5) / 0.25.
  std::vector<float> src(12 * 12 * 3);
  for (size_t i = 0; i < src.size(); i += 3) src[i] = 0.8f, src[i + 1] = 0.4f, src[i + 2] = 0.2f;
  AugmentParams p = identity_params(12, 12);
  p.crop_y = 2, p.crop_x = 1, p.crop_h = 6, p.crop_w = 9;
  p.flip = 1;
  p.jitter = 1;
  p.brightness = 0.1f;
  p.grayscale = 1;
  p.blur = 1;
  p.blur_radius = 2;
  p.blur_sigma = 1.5f;
  p.solarize = 1;
  Normalization norm{{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
  std::vector<float> out(8 * 8 * 3);
  AugmentWorkspace ws;
  apply_view(FloatImageView{src.data(), 12, 12, 3}, p, 8, 8, norm, out.data(), ws);
  const double gray = 0.2989 * 0.9 + 0.5870 * 0.5 + 0.1140 * 0.3;
  for (float v : out) CHECK(v == Approx(((1.0 - gray) - 0.5) / 0.25).margin(1e-5));
}

TEST_CASE("random resized crop follows torchvision: area, log-uniform aspect, centre fallback", "[augment]") {
  // On a square source, a draw (A, r) fits when A r <= 1 and A / r <= 1, so the accepted area has density
  // proportional to min(1, -ln A / ln(4/3)) on [0.08, 1]: flat up to 3/4. P(A < 0.415) = 0.335 / 0.78902.
  const ViewOptions o = ViewOptions::byol_view1();
  std::mt19937_64 gen(123);
  const int n = 20000, side = 1000;
  int below = 0, log_aspect_negative = 0, small = 0;
  double sum_log_aspect_small = 0, sum_sq_small = 0;
  for (int i = 0; i < n; ++i) {
    const CropBox b = random_resized_crop(side, side, o, gen);
    const double area = double(b.h) * b.w / (double(side) * side), aspect = double(b.w) / b.h;
    REQUIRE(b.y >= 0);
    REQUIRE(b.x >= 0);
    REQUIRE(b.y + b.h <= side);
    REQUIRE(b.x + b.w <= side);
    CHECK(area >= 0.08 * 0.995);
    CHECK(area <= 1.0);
    CHECK(aspect >= 0.75 * 0.995);
    CHECK(aspect <= 4.0 / 3.0 * 1.005);
    below += area < 0.415;
    if (area < 0.5) {  // every aspect fits: log r uniform on [ln 3/4, ln 4/3]
      ++small;
      log_aspect_negative += aspect < 1;
      sum_log_aspect_small += std::log(aspect);
      sum_sq_small += std::log(aspect) * std::log(aspect);
    }
  }
  CHECK(double(below) / n == Approx(0.335 / 0.78902).margin(0.015));
  CHECK(double(log_aspect_negative) / small == Approx(0.5).margin(0.02));
  CHECK(sum_log_aspect_small / small == Approx(0).margin(0.005));
  const double width = 2 * std::log(4.0 / 3.0);
  CHECK(sum_sq_small / small == Approx(width * width / 12).margin(0.0015));

  // A 10 x 1000 strip never fits a box of area >= 8% at these aspects: the centre fallback takes the
  // full height and width round(10 * 4/3) = 13.
  const CropBox f = random_resized_crop(10, 1000, o, gen);
  CHECK(f.h == 10);
  CHECK(f.w == 13);
  CHECK(f.y == 0);
  CHECK(f.x == (1000 - 13) / 2);
}

TEST_CASE("sampled parameters match the recipe's probabilities and ranges for both views", "[augment]") {
  std::mt19937_64 gen(99);
  const int n = 20000;
  struct Counts {
    int flip = 0, jitter = 0, gray = 0, blur = 0, solarize = 0;
    double sigma_sum = 0;
    std::map<std::array<int, 4>, int> orders;
  };
  Counts c[2];
  const ViewOptions views[2] = {ViewOptions::byol_view1(), ViewOptions::byol_view2()};
  for (int i = 0; i < n; ++i)
    for (int v = 0; v < 2; ++v) {
      const AugmentParams p = sample_view(views[v], 300, 400, 224, 224, gen);
      c[v].flip += p.flip, c[v].jitter += p.jitter, c[v].gray += p.grayscale, c[v].blur += p.blur;
      c[v].solarize += p.solarize;
      c[v].sigma_sum += p.blur_sigma;
      CHECK(std::abs(p.brightness) <= 0.4f);
      CHECK((p.contrast >= 0.6f && p.contrast <= 1.4f));
      CHECK((p.saturation >= 0.8f && p.saturation <= 1.2f));
      CHECK(std::abs(p.hue) <= 0.1f);
      CHECK((p.blur_sigma >= 0.1f && p.blur_sigma <= 2.0f));
      CHECK(p.blur_radius == 11);
      CHECK(p.solarize_threshold == 0.5f);
      c[v].orders[{p.jitter_order[0], p.jitter_order[1], p.jitter_order[2], p.jitter_order[3]}]++;
    }
  const double tol = 0.015;  // about 4 standard deviations at n = 20000
  for (int v = 0; v < 2; ++v) {
    CHECK(c[v].flip / double(n) == Approx(0.5).margin(tol));
    CHECK(c[v].jitter / double(n) == Approx(0.8).margin(tol));
    CHECK(c[v].gray / double(n) == Approx(0.2).margin(tol));
    CHECK(c[v].sigma_sum / n == Approx(1.05).margin(0.02));
    REQUIRE(c[v].orders.size() == 24);  // every permutation of the four ops
    for (const auto& [order, count] : c[v].orders) {
      std::set<int> ops(order.begin(), order.end());
      CHECK(ops.size() == 4);
      CHECK(count / double(n) == Approx(1.0 / 24).margin(0.008));
    }
  }
  CHECK(c[0].blur == n);
  CHECK(c[1].blur / double(n) == Approx(0.1).margin(tol));
  CHECK(c[0].solarize == 0);
  CHECK(c[1].solarize / double(n) == Approx(0.2).margin(tol));
}

TEST_CASE("every strength and probability is configurable", "[augment]") {
  ViewOptions o = ViewOptions::byol_view1();
  o.flip_p = 0, o.jitter_p = 1, o.grayscale_p = 1, o.blur_p = 0, o.solarize_p = 1, o.solarize_threshold = 0.3;
  o.brightness = 0, o.contrast = 0, o.saturation = 0, o.hue = 0, o.jitter_random_order = false;
  o.area_min = o.area_max = 0.25, o.aspect_min = o.aspect_max = 1.0;
  o.blur_kernel_fraction = 0.2;
  std::mt19937_64 gen(5);
  for (int i = 0; i < 100; ++i) {
    const AugmentParams p = sample_view(o, 100, 100, 32, 32, gen);
    CHECK(p.crop_h == 50);
    CHECK(p.crop_w == 50);
    CHECK(p.flip == 0);
    CHECK(p.jitter == 1);
    CHECK(p.grayscale == 1);
    CHECK(p.blur == 0);
    CHECK(p.solarize == 1);
    CHECK(p.solarize_threshold == 0.3f);
    CHECK(p.brightness == 0);
    CHECK(p.contrast == 1);
    CHECK(p.saturation == 1);
    CHECK(p.hue == 0);
    CHECK(p.blur_radius == 3);  // kernel int(32 * 0.2) = 6 -> radius 3
    CHECK((p.jitter_order[0] == 0 && p.jitter_order[1] == 1 && p.jitter_order[2] == 2 &&
           p.jitter_order[3] == 3));
  }
}

TEST_CASE("evaluation transforms: centre crop of 224/256 of the shorter side, and crop + flip", "[augment]") {
  std::mt19937_64 gen(1);
  const AugmentParams p = sample_view(ViewOptions::center_crop(0.875), 256, 320, 224, 224, gen);
  CHECK(p.crop_h == Approx(224));
  CHECK(p.crop_w == Approx(224));
  CHECK(p.crop_y == Approx(16));
  CHECK(p.crop_x == Approx(48));
  CHECK(p.flip == 0);
  CHECK(p.jitter == 0);
  CHECK(p.grayscale == 0);
  CHECK(p.blur == 0);
  CHECK(p.solarize == 0);
  int flips = 0;
  for (int i = 0; i < 2000; ++i) {
    const AugmentParams q = sample_view(ViewOptions::crop_flip(), 64, 64, 32, 32, gen);
    flips += q.flip;
    CHECK((q.jitter == 0 && q.grayscale == 0 && q.blur == 0 && q.solarize == 0));
  }
  CHECK(flips / 2000.0 == Approx(0.5).margin(0.05));
  CHECK(decode_min_side(AugmentOptions::eval(224, Normalization::imagenet())) == 256);
  // smallest crop side sqrt(0.08 * 3/4) of the source must still give 32 pixels: 32 / 0.2449 -> 131
  CHECK(decode_min_side(AugmentOptions::byol(32, Normalization::cifar10())) == 131);
}

TEST_CASE("the same seed gives the same views; other seeds, epochs and images differ", "[augment]") {
  const auto img = byol::data::testing::smooth_image(40, 48, 3);
  const AugmentOptions opt = AugmentOptions::byol(24, Normalization::imagenet());
  auto views = [&](uint64_t seed, int64_t epoch, int64_t index) {
    std::mt19937_64 gen = image_generator(seed, epoch, index);
    std::vector<float> out(2 * 24 * 24 * 3);
    AugmentWorkspace ws;
    for (int v = 0; v < 2; ++v) {
      const AugmentParams p = sample_view(opt.views[v], 40, 48, 24, 24, gen);
      apply_view(img.view(), p, 24, 24, opt.normalization, out.data() + v * 24 * 24 * 3, ws);
    }
    return out;
  };
  const auto a = views(7, 3, 11);
  CHECK(a == views(7, 3, 11));
  CHECK(a != views(8, 3, 11));
  CHECK(a != views(7, 4, 11));
  CHECK(a != views(7, 3, 12));
  // the two views of one image differ
  CHECK(!std::equal(a.begin(), a.begin() + 24 * 24 * 3, a.begin() + 24 * 24 * 3));
}

TEST_CASE("resize_short_side_center_crop gives the pack's sizes", "[augment]") {
  const auto img = byol::data::testing::smooth_image(30, 60, 3);
  std::vector<uint8_t> out;
  int h = 0, w = 0;
  AugmentWorkspace ws;
  resize_short_side_center_crop(img.view(), 15, 0, 0, out, &h, &w, ws);
  CHECK(h == 15);
  CHECK(w == 30);
  CHECK(out.size() == size_t(15 * 30 * 3));
  resize_short_side_center_crop(img.view(), 0, 20, 20, out, &h, &w, ws);
  CHECK(h == 20);
  CHECK(w == 20);
  for (int y = 0; y < 20; ++y)  // scale 1: a plain centre crop, offsets (5, 20)
    for (int x = 0; x < 20; ++x) CHECK(out[(y * 20 + x) * 3] == img.pixels[((y + 5) * 60 + x + 20) * 3]);
}
