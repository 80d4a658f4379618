// CPU implementation of the BYOL augmentations (see augment.h for the recipe and the conventions).
// The per-pixel formulas are in engine/math/augment.h, shared with the CUDA kernel.
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/common.h"
#include "engine/math/augment.h"

namespace byol::data {

// --- options -------------------------------------------------------------------------------------------

// [byol:views]
ViewOptions ViewOptions::byol_view1() {
  ViewOptions o;
  o.blur_p = 1.0;
  o.solarize_p = 0.0;
  return o;
}

ViewOptions ViewOptions::byol_view2() {
  ViewOptions o;
  o.blur_p = 0.1;
  o.solarize_p = 0.2;
  return o;
}

ViewOptions ViewOptions::crop_flip() {
  ViewOptions o;
  o.jitter_p = 0.0;
  o.grayscale_p = 0.0;
  o.blur_p = 0.0;
  o.solarize_p = 0.0;
  return o;
}

ViewOptions ViewOptions::center_crop(double fraction) {
  ViewOptions o = crop_flip();
  o.crop = CropMode::center;
  o.center_fraction = fraction;
  o.flip_p = 0.0;
  return o;
}

std::optional<Normalization> Normalization::named(const std::string& name) {
  if (name == "fashion-mnist") return fashion_mnist();
  if (name == "cifar10") return cifar10();
  if (name == "cifar100") return cifar100();
  if (name == "stl10") return stl10();
  if (name == "imagenet") return imagenet();
  if (name == "none") return none();
  return std::nullopt;
}

AugmentOptions AugmentOptions::byol(int side, Normalization norm) {
  return {side, side, {ViewOptions::byol_view1(), ViewOptions::byol_view2()}, norm};
}

AugmentOptions AugmentOptions::eval(int side, Normalization norm, double center_fraction) {
  return {side, side, {ViewOptions::center_crop(center_fraction)}, norm};
}

AugmentOptions AugmentOptions::crop_flip(int side, Normalization norm) {
  return {side, side, {ViewOptions::crop_flip()}, norm};
}

int decode_min_side(const AugmentOptions& options) {
  const double out_side = std::min(options.height, options.width);
  double need = 0;
  for (const ViewOptions& v : options.views) {
    if (v.crop == CropMode::center) {
      need = std::max(need, out_side / std::max(v.center_fraction, 1e-6));
    } else {
      // The crop's shorter side is at least sqrt(area_min * min(aspect, 1 / aspect)) of the source side.
      const double aspect = std::min(v.aspect_min, 1.0 / v.aspect_max);
      need = std::max(need, out_side / std::sqrt(std::max(v.area_min * aspect, 1e-6)));
    }
  }
  return static_cast<int>(std::ceil(need));
}

JitterStyle parse_jitter_style(const std::string& name) {
  if (name == "official") return JitterStyle::official;
  if (name == "torchvision") return JitterStyle::torchvision;
  BYOL_FAIL("colour jitter style: expected 'official' or 'torchvision', got '", name, "'");
}

const char* jitter_style_name(JitterStyle style) {
  return style == JitterStyle::torchvision ? "torchvision" : "official";
}

// --- randomness ----------------------------------------------------------------------------------------

uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);  // SplitMix64 finaliser over a combination
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::mt19937_64 image_generator(uint64_t seed, int64_t epoch, int64_t index) {
  return std::mt19937_64(mix_seed(mix_seed(mix_seed(seed, 0x417567ull), static_cast<uint64_t>(epoch)),
                                  static_cast<uint64_t>(index)));
}

double uniform01(std::mt19937_64& gen) {
  return static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

namespace {

double uniform(std::mt19937_64& gen, double lo, double hi) {
  return lo + (hi - lo) * uniform01(gen);
}

int uniform_int(std::mt19937_64& gen, int lo, int hi) {  // inclusive
  const int v = lo + static_cast<int>(uniform01(gen) * (static_cast<double>(hi) - lo + 1));
  return std::min(v, hi);
}

int round_half_even(double x) {
  return static_cast<int>(std::nearbyint(x));
}

}  // namespace

CropBox random_resized_crop(int src_h, int src_w, const ViewOptions& o, std::mt19937_64& gen) {
  const double area = double(src_h) * src_w;
  const double log_lo = std::log(o.aspect_min), log_hi = std::log(o.aspect_max);
  for (int attempt = 0; attempt < o.crop_attempts; ++attempt) {
    const double target_area = area * uniform(gen, o.area_min, o.area_max);
    const double aspect = std::exp(uniform(gen, log_lo, log_hi));
    const int w = round_half_even(std::sqrt(target_area * aspect));
    const int h = round_half_even(std::sqrt(target_area / aspect));
    if (w > 0 && w <= src_w && h > 0 && h <= src_h) {
      const int y = uniform_int(gen, 0, src_h - h);
      const int x = uniform_int(gen, 0, src_w - w);
      return {y, x, h, w};
    }
  }
  const double in_ratio = double(src_w) / src_h;
  int w = src_w, h = src_h;
  if (in_ratio < o.aspect_min) {
    h = std::max(1, round_half_even(w / o.aspect_min));
  } else if (in_ratio > o.aspect_max) {
    w = std::max(1, round_half_even(h * o.aspect_max));
  }
  return {(src_h - h) / 2, (src_w - w) / 2, h, w};
}

AugmentParams identity_params(int src_h, int src_w) {
  AugmentParams p{};
  p.crop_h = static_cast<float>(src_h);
  p.crop_w = static_cast<float>(src_w);
  p.contrast = 1.0f;
  p.saturation = 1.0f;
  p.blur_sigma = 1.0f;
  p.solarize_threshold = 0.5f;
  for (uint8_t i = 0; i < 4; ++i) p.jitter_order[i] = i;
  return p;
}

AugmentParams sample_view(const ViewOptions& o, int src_h, int src_w, int out_h, int out_w,
                          std::mt19937_64& gen) {
  BYOL_CHECK(src_h > 0 && src_w > 0, "sample_view: expected a non-empty source image, got ", src_h, "x",
             src_w);
  BYOL_CHECK(out_h > 0 && out_w > 0, "sample_view: expected a positive output size, got ", out_h, "x", out_w);
  AugmentParams p = identity_params(src_h, src_w);
  if (o.crop == CropMode::random_resized) {
    const CropBox box = random_resized_crop(src_h, src_w, o, gen);
    p.crop_y = float(box.y), p.crop_x = float(box.x), p.crop_h = float(box.h), p.crop_w = float(box.w);
  } else {
    // Resize the shorter side to out / fraction, then take the centred out_h x out_w: in source pixels a
    // box of fraction * shorter side (for a square output), centred.
    const double scale = o.center_fraction * std::min(src_h, src_w) / std::min(out_h, out_w);
    const double ch = std::min<double>(src_h, out_h * scale), cw = std::min<double>(src_w, out_w * scale);
    p.crop_h = float(ch), p.crop_w = float(cw);
    p.crop_y = float((src_h - ch) / 2), p.crop_x = float((src_w - cw) / 2);
  }
  // Every remaining draw is made whether or not its op applies, so the stream layout is fixed.
  p.flip = uniform01(gen) < o.flip_p;
  p.jitter = uniform01(gen) < o.jitter_p;
  p.brightness = float(uniform(gen, -o.brightness, o.brightness));
  p.contrast = float(uniform(gen, std::max(0.0, 1.0 - o.contrast), 1.0 + o.contrast));
  p.saturation = float(uniform(gen, std::max(0.0, 1.0 - o.saturation), 1.0 + o.saturation));
  p.hue = float(uniform(gen, -o.hue, o.hue));
  for (int i = 3; i > 0; --i) {  // Fisher-Yates
    const int j = uniform_int(gen, 0, i);
    if (o.jitter_random_order) std::swap(p.jitter_order[i], p.jitter_order[j]);
  }
  p.grayscale = uniform01(gen) < o.grayscale_p;
  p.blur = uniform01(gen) < o.blur_p;
  p.blur_sigma = float(uniform(gen, o.blur_sigma_min, o.blur_sigma_max));
  p.blur_radius = math::blur_radius(std::min(out_h, out_w), float(o.blur_kernel_fraction));
  p.solarize = uniform01(gen) < o.solarize_p;
  p.solarize_threshold = float(o.solarize_threshold);
  p.jitter_style = static_cast<uint8_t>(o.jitter_style);
  return p;
}

// --- resize --------------------------------------------------------------------------------------------

namespace {

// Taps of a separable antialiased bicubic resample (math::resample_taps: PIL's rule, shared with the CUDA
// kernel), one row of max_taps normalised weights per output sample; `reverse` stores output o's taps
// at out_size - 1 - o (a horizontal flip).
int compute_taps(float origin, float length, int src_size, int out_size, bool reverse,
                 std::vector<int>& start, std::vector<int>& count, std::vector<float>& weight) {
  const int max_taps = math::resample_max_taps(length, out_size);
  start.assign(out_size, 0);
  count.assign(out_size, 0);
  weight.assign(size_t(out_size) * max_taps, 0.0f);
  for (int o = 0; o < out_size; ++o) {
    const math::ResampleTaps taps = math::resample_taps(origin, length, src_size, out_size, o);
    const int slot = reverse ? out_size - 1 - o : o;
    float* w = weight.data() + size_t(slot) * max_taps;
    float sum = 0;
    for (int j = taps.first; j < taps.first + taps.count; ++j) sum += w[j - taps.first] = taps.weight(j);
    int first = taps.first, n = taps.count;
    if (n <= 0 || sum == 0.0f) {  // degenerate window: the nearest pixel
      first = taps.nearest();
      n = 1;
      w[0] = 1.0f;
      sum = 1.0f;
    }
    for (int t = 0; t < n; ++t) w[t] /= sum;
    start[slot] = first;
    count[slot] = n;
  }
  return max_taps;
}

template <class T>
void resize_crop_impl(const T* src, int sh, int sw, int sc, float cy, float cx, float ch, float cw, bool flip,
                      int oh, int ow, float* out, AugmentWorkspace& ws, float in_scale) {
  BYOL_CHECK(sc == 1 || sc == 3, "resize_crop: expected a source with 1 or 3 channels, got ", sc);
  BYOL_CHECK(sh > 0 && sw > 0 && oh > 0 && ow > 0 && ch > 0 && cw > 0,
             "resize_crop: expected positive sizes, got ", "source ", sh, "x", sw, ", crop ", ch, "x", cw,
             ", output ", oh, "x", ow);
  const int tx = compute_taps(cx, cw, sw, ow, flip, ws.tap_start_x, ws.tap_count_x, ws.tap_weight_x);
  const int ty = compute_taps(cy, ch, sh, oh, false, ws.tap_start_y, ws.tap_count_y, ws.tap_weight_y);
  int y_lo = sh, y_hi = 0;
  for (int o = 0; o < oh; ++o) {
    y_lo = std::min(y_lo, ws.tap_start_y[o]);
    y_hi = std::max(y_hi, ws.tap_start_y[o] + ws.tap_count_y[o]);
  }
  const size_t row_len = size_t(ow) * 3;
  ws.rows.resize(size_t(y_hi - y_lo) * row_len);
  // Horizontal pass over the source rows the vertical taps touch, in source units.
  for (int y = y_lo; y < y_hi; ++y) {
    const T* s = src + size_t(y) * sw * sc;
    float* r = ws.rows.data() + size_t(y - y_lo) * row_len;
    for (int o = 0; o < ow; ++o) {
      const float* w = ws.tap_weight_x.data() + size_t(o) * tx;
      const T* p = s + size_t(ws.tap_start_x[o]) * sc;
      const int n = ws.tap_count_x[o];
      if (sc == 3) {
        float a0 = 0, a1 = 0, a2 = 0;
        for (int t = 0; t < n; ++t) {
          a0 += w[t] * float(p[3 * t]);
          a1 += w[t] * float(p[3 * t + 1]);
          a2 += w[t] * float(p[3 * t + 2]);
        }
        r[3 * o] = a0, r[3 * o + 1] = a1, r[3 * o + 2] = a2;
      } else {
        float a = 0;
        for (int t = 0; t < n; ++t) a += w[t] * float(p[t]);
        r[3 * o] = r[3 * o + 1] = r[3 * o + 2] = a;
      }
    }
  }
  // Vertical pass, vectorised along the output row; then back to [0, 1] and clipped.
  for (int o = 0; o < oh; ++o) {
    float* d = out + size_t(o) * row_len;
    const float* w = ws.tap_weight_y.data() + size_t(o) * ty;
    const int n = ws.tap_count_y[o];
    const float* r0 = ws.rows.data() + size_t(ws.tap_start_y[o] - y_lo) * row_len;
    for (size_t i = 0; i < row_len; ++i) d[i] = w[0] * r0[i];
    for (int t = 1; t < n; ++t) {
      const float* r = r0 + size_t(t) * row_len;
      const float wt = w[t];
      for (size_t i = 0; i < row_len; ++i) d[i] += wt * r[i];
    }
    for (size_t i = 0; i < row_len; ++i) d[i] = math::clamp01(d[i] * in_scale);
  }
}

}  // namespace

void resize_crop(const ImageView& src, float crop_y, float crop_x, float crop_h, float crop_w, bool flip,
                 int out_h, int out_w, float* out, AugmentWorkspace& ws) {
  resize_crop_impl(src.data, src.height, src.width, src.channels, crop_y, crop_x, crop_h, crop_w, flip, out_h,
                   out_w, out, ws, 1.0f / 255.0f);
}

void resize_crop(const FloatImageView& src, float crop_y, float crop_x, float crop_h, float crop_w, bool flip,
                 int out_h, int out_w, float* out, AugmentWorkspace& ws) {
  resize_crop_impl(src.data, src.height, src.width, src.channels, crop_y, crop_x, crop_h, crop_w, flip, out_h,
                   out_w, out, ws, 1.0f);
}

// --- colour, blur, solarize, normalise ---------------------------------------------------------------

namespace {

// Applies an Rgb -> Rgb function to every pixel, through blocks deinterleaved into planes so that the
// compiler vectorises the per-pixel function (its selects become blends instead of branches).
template <class F>
void for_each_pixel_planar(float* img, size_t n, F f) {
  constexpr size_t kBlock = 64;
  alignas(64) float r[kBlock], g[kBlock], b[kBlock];
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t m = std::min(kBlock, n - start);
    float* p = img + 3 * start;
    for (size_t i = 0; i < m; ++i) r[i] = p[3 * i], g[i] = p[3 * i + 1], b[i] = p[3 * i + 2];
    for (size_t i = m; i < kBlock; ++i) r[i] = g[i] = b[i] = 0.0f;
    for (size_t i = 0; i < kBlock; ++i) {
      const math::Rgb c = f(math::Rgb{r[i], g[i], b[i]});
      r[i] = c.r, g[i] = c.g, b[i] = c.b;
    }
    for (size_t i = 0; i < m; ++i) p[3 * i] = r[i], p[3 * i + 1] = g[i], p[3 * i + 2] = b[i];
  }
}

}  // namespace

void color_jitter(float* img, int h, int w, const AugmentParams& p) {
  const size_t n = size_t(h) * w;
  for (int k = 0; k < 4; ++k) {
    switch (p.jitter_order[k]) {
      case kBrightness:
        if (p.jitter_style == static_cast<uint8_t>(JitterStyle::torchvision)) {
          const float factor = 1.0f + p.brightness;
          for (size_t i = 0; i < 3 * n; ++i) img[i] = math::scale_brightness(img[i], factor);
        } else {
          for (size_t i = 0; i < 3 * n; ++i) img[i] = math::adjust_brightness(img[i], p.brightness);
        }
        break;
      case kContrast: {
        // 48 independent double accumulators (16 pixels x 3 channels) so the sum vectorises.
        double part[48] = {};
        size_t i = 0;
        for (; i + 16 <= n; i += 16)
          for (int j = 0; j < 48; ++j) part[j] += img[3 * i + j];
        double sum[3] = {0, 0, 0};
        for (int j = 0; j < 48; ++j) sum[j % 3] += part[j];
        for (; i < n; ++i)
          for (int c = 0; c < 3; ++c) sum[c] += img[3 * i + c];
        float mean[3] = {float(sum[0] / n), float(sum[1] / n), float(sum[2] / n)};
        if (p.jitter_style == static_cast<uint8_t>(JitterStyle::torchvision)) {
          // The grey image's mean (grayscale is linear, so it is the grey of the channel means).
          const float grey = math::grayscale({mean[0], mean[1], mean[2]});
          mean[0] = mean[1] = mean[2] = grey;
        }
        for (size_t i = 0; i < n; ++i)
          for (int c = 0; c < 3; ++c)
            img[3 * i + c] = math::adjust_contrast(img[3 * i + c], mean[c], p.contrast);
        break;
      }
      case kSaturation:
        for_each_pixel_planar(img, n,
                              [f = p.saturation](math::Rgb c) { return math::adjust_saturation(c, f); });
        break;
      case kHue:
        for_each_pixel_planar(img, n, [d = p.hue](math::Rgb c) { return math::adjust_hue(c, d); });
        break;
      default:
        BYOL_FAIL("color_jitter: jitter_order holds ", int(p.jitter_order[k]), ", expected 0..3");
    }
  }
}

void to_grayscale(float* img, int h, int w) {
  for (size_t i = 0, n = size_t(h) * w; i < n; ++i) {
    const float g = math::grayscale({img[3 * i], img[3 * i + 1], img[3 * i + 2]});
    img[3 * i] = img[3 * i + 1] = img[3 * i + 2] = g;
  }
}

std::vector<float> gaussian_kernel(int radius, float sigma) {
  std::vector<float> k(2 * size_t(radius) + 1);
  float sum = 0;
  for (int i = -radius; i <= radius; ++i) sum += k[i + radius] = math::gaussian_weight(i, sigma);
  for (float& v : k) v /= sum;
  return k;
}

namespace {

// dst[i] = sum_t k[t] * src[t][i] for i < n, where src[t] is the t-th tap's input row. The sum runs in
// chunks of 48 floats held in three 16-wide registers across all taps: a tap-major loop loads and stores
// dst once per tap (memory-bound), and left to itself the compiler vectorises across taps with gathers.
// GCC/Clang vector extensions; element order of the sums is the same as the scalar loop's.
// (No helper function returns a Vec16: without AVX-512 that changes the ABI and GCC warns, -Wpsabi.)
typedef float Vec16 __attribute__((vector_size(64)));

void weighted_sum(float* dst, size_t n, const float* k, int taps, const float* const* src) {
  size_t i0 = 0;
  for (; i0 + 48 <= n; i0 += 48) {
    Vec16 a0 = {}, a1 = {}, a2 = {};
    for (int t = 0; t < taps; ++t) {
      const float* s = src[t] + i0;
      const float kt = k[t];
      Vec16 s0, s1, s2;
      std::memcpy(&s0, s, sizeof s0);
      std::memcpy(&s1, s + 16, sizeof s1);
      std::memcpy(&s2, s + 32, sizeof s2);
      a0 += kt * s0;
      a1 += kt * s1;
      a2 += kt * s2;
    }
    std::memcpy(dst + i0, &a0, sizeof a0);
    std::memcpy(dst + i0 + 16, &a1, sizeof a1);
    std::memcpy(dst + i0 + 32, &a2, sizeof a2);
  }
  for (size_t i = i0; i < n; ++i) {
    float acc = 0;
    for (int t = 0; t < taps; ++t) acc += k[t] * src[t][i];
    dst[i] = acc;
  }
}

}  // namespace

void gaussian_blur(float* img, int h, int w, int radius, float sigma, AugmentWorkspace& ws) {
  if (radius <= 0) return;
  const std::vector<float> k = gaussian_kernel(radius, sigma);
  const int taps = 2 * radius + 1;
  const size_t row_len = size_t(w) * 3;
  // Horizontal: copy each row with reflected borders, then row[i] = sum_t k[t] pad[i + 3 t].
  ws.pad.resize(size_t(w + 2 * radius) * 3);
  float* pad = ws.pad.data();
  std::vector<const float*> src(taps);
  for (int t = 0; t < taps; ++t) src[t] = pad + size_t(t) * 3;
  for (int y = 0; y < h; ++y) {
    float* row = img + size_t(y) * row_len;
    std::copy(row, row + row_len, pad + size_t(radius) * 3);
    for (int x = -radius; x < 0; ++x) {
      const float* s = row + size_t(math::reflect_index(x, w)) * 3;
      std::copy(s, s + 3, pad + size_t(x + radius) * 3);
    }
    for (int x = w; x < w + radius; ++x) {
      const float* s = row + size_t(math::reflect_index(x, w)) * 3;
      std::copy(s, s + 3, pad + size_t(x + radius) * 3);
    }
    weighted_sum(row, row_len, k.data(), taps, src.data());
  }
  // Vertical: from a copy of the image, rows at reflected offsets.
  ws.rows.assign(img, img + size_t(h) * row_len);
  const float* rows = ws.rows.data();
  for (int y = 0; y < h; ++y) {
    for (int t = 0; t < taps; ++t) src[t] = rows + size_t(math::reflect_index(y + t - radius, h)) * row_len;
    weighted_sum(img + size_t(y) * row_len, row_len, k.data(), taps, src.data());
  }
}

void solarize(float* img, int h, int w, float threshold) {
  for (size_t i = 0, n = size_t(h) * w * 3; i < n; ++i) img[i] = math::solarize(img[i], threshold);
}

void normalize(float* img, int h, int w, const Normalization& norm) {
  const float inv[3] = {1.0f / norm.std[0], 1.0f / norm.std[1], 1.0f / norm.std[2]};
  for (size_t i = 0, n = size_t(h) * w; i < n; ++i)
    for (int c = 0; c < 3; ++c) img[3 * i + c] = math::normalize(img[3 * i + c], norm.mean[c], inv[c]);
}

namespace {

void apply_after_resize(const AugmentParams& p, int out_h, int out_w, const Normalization& norm, float* out,
                        AugmentWorkspace& ws) {
  if (p.jitter) color_jitter(out, out_h, out_w, p);
  if (p.grayscale) to_grayscale(out, out_h, out_w);
  if (p.blur) gaussian_blur(out, out_h, out_w, p.blur_radius, p.blur_sigma, ws);
  if (p.solarize) solarize(out, out_h, out_w, p.solarize_threshold);
  normalize(out, out_h, out_w, norm);
}

}  // namespace

void apply_view(const ImageView& src, const AugmentParams& p, int out_h, int out_w, const Normalization& norm,
                float* out, AugmentWorkspace& ws) {
  resize_crop(src, p.crop_y, p.crop_x, p.crop_h, p.crop_w, p.flip != 0, out_h, out_w, out, ws);
  apply_after_resize(p, out_h, out_w, norm, out, ws);
}

void apply_view(const FloatImageView& src, const AugmentParams& p, int out_h, int out_w,
                const Normalization& norm, float* out, AugmentWorkspace& ws) {
  resize_crop(src, p.crop_y, p.crop_x, p.crop_h, p.crop_w, p.flip != 0, out_h, out_w, out, ws);
  apply_after_resize(p, out_h, out_w, norm, out, ws);
}

void resize_short_side_center_crop(const ImageView& src, int short_side, int crop_h, int crop_w,
                                   std::vector<uint8_t>& out, int* out_h, int* out_w, AugmentWorkspace& ws) {
  const double scale = short_side > 0 ? double(short_side) / std::min(src.height, src.width) : 1.0;
  const int rh = short_side > 0 ? std::max(1, int(std::lround(src.height * scale))) : src.height;
  const int rw = short_side > 0 ? std::max(1, int(std::lround(src.width * scale))) : src.width;
  const int oh = crop_h > 0 ? std::min(crop_h, rh) : rh;
  const int ow = crop_w > 0 ? std::min(crop_w, rw) : rw;
  const double sy = double(rh) / src.height, sx = double(rw) / src.width;  // resized pixels per source pixel
  const float box_h = float(oh / sy), box_w = float(ow / sx);
  const float box_y = float((rh - oh) / 2.0 / sy), box_x = float((rw - ow) / 2.0 / sx);
  std::vector<float> f(size_t(oh) * ow * 3);
  resize_crop(src, box_y, box_x, box_h, box_w, false, oh, ow, f.data(), ws);
  out.resize(f.size());
  for (size_t i = 0; i < f.size(); ++i) out[i] = static_cast<uint8_t>(std::floor(f[i] * 255.0f + 0.5f));
  *out_h = oh;
  *out_w = ow;
}

}  // namespace byol::data
