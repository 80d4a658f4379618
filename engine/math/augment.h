// Per-pixel math of the BYOL augmentations, shared by the CPU implementation (data/augment.cpp) and
// the CUDA augmentation kernel, so that both apply one formula to the same AugmentParams.
//
// Conventions:
//  - Pixel values are floats in [0, 1]; every colour op clips its result to [0, 1], as the official
//    BYOL code does after each of brightness, contrast, saturation and hue.
//  - Hue is measured in turns ([0, 1) is the full colour circle), as in TensorFlow's adjust_hue, which
//    the official BYOL code uses: a hue delta of 1/3 maps red to green.
//  - Only <cmath> functions that have device overloads are used (floorf, fabsf, expf). Minima and maxima
//    are written as comparisons: fminf / fmaxf are library calls on the host without -ffast-math (NaN
//    rules), which made them the hottest instructions of the CPU loader.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/math/hd.h"

namespace byol::math {

// The colour-jitter operations, in the order AugmentParams::jitter_order lists them.
enum JitterOp : uint8_t { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };
// AugmentParams::jitter_style: brightness and contrast conventions (data::JitterStyle has the same values).
enum JitterStyleCode : uint8_t { kJitterOfficial = 0, kJitterTorchvision = 1 };

// The random parameters of one view of one image: everything a view needs besides the image and the
// output size (data::sample_view draws them). Plain data, copied to the GPU as is.
struct AugmentParams {
  float crop_y, crop_x, crop_h, crop_w;  // crop box in source pixels (top, left, height, width)
  float brightness;                      // additive delta (torchvision style: factor - 1)
  float contrast;                        // factor around the channel mean
  float saturation;                      // factor on HSV saturation
  float hue;                             // delta in turns
  float blur_sigma;
  float solarize_threshold;
  int32_t blur_radius;      // kernel of 2 * radius + 1 taps
  uint8_t flip;             // mirror horizontally
  uint8_t jitter;           // apply the colour jitter
  uint8_t jitter_order[4];  // a permutation of JitterOp
  uint8_t grayscale;
  uint8_t blur;
  uint8_t solarize;
  uint8_t jitter_style;  // JitterStyleCode
};

struct Rgb {
  float r, g, b;
};

BYOL_HD float max3(float a, float b, float c) {
  const float m = a > b ? a : b;
  return m > c ? m : c;
}

BYOL_HD float min3(float a, float b, float c) {
  const float m = a < b ? a : b;
  return m < c ? m : c;
}

BYOL_HD float clamp01(float x) {
  x = x > 0.0f ? x : 0.0f;
  return x < 1.0f ? x : 1.0f;
}

// Brightness, additive as in the official BYOL code (tf.image.adjust_brightness): x + delta.
BYOL_HD float adjust_brightness(float x, float delta) {
  return clamp01(x + delta);
}

// Brightness, multiplicative as torchvision's ColorJitter (PIL's ImageEnhance.Brightness): x * factor.
BYOL_HD float scale_brightness(float x, float factor) {
  return clamp01(x * factor);
}

// Contrast around the channel's mean over the image (tf.image.adjust_contrast):
// (x - mean) * factor + mean. The mean is a per-image reduction taken before this op runs.
BYOL_HD float adjust_contrast(float x, float channel_mean, float factor) {
  return clamp01((x - channel_mean) * factor + channel_mean);
}

// Saturation: scale S of HSV by factor, clip S to [0, 1], keep H and V. With V = max(r, g, b) and
// S = (V - min) / V, the HSV round trip reduces to moving every channel towards V:
//   c' = V - (V - c) * S' / S.
// A gray pixel (S = 0) stays as it is.
BYOL_HD Rgb adjust_saturation(Rgb c, float factor) {
  const float v = max3(c.r, c.g, c.b);
  const float mn = min3(c.r, c.g, c.b);
  const float d = v - mn;
  if (!(d > 0.0f)) return c;
  const float s = d / v;
  const float s_new = clamp01(s * factor);
  const float k = s_new / s;
  return {clamp01(v - (v - c.r) * k), clamp01(v - (v - c.g) * k), clamp01(v - (v - c.b) * k)};
}

// Hue: rotate H of HSV by delta turns (wrapping), keep S and V. Branch-free (selects only), because
// per-pixel branches on which channel is largest mispredict on natural images. With h in sixths of a
// turn, each channel of the rotated colour is V - (V - min) * clamp(min(k, 4 - k), 0, 1), where
// k = (n + h) mod 6 and n = 5, 3, 1 for R, G, B (the closed form of HSV -> RGB).
BYOL_HD float hue_channel(float n, float h, float v, float d) {
  float k = n + h;
  k = k >= 6.0f ? k - 6.0f : k;
  float t = k < 4.0f - k ? k : 4.0f - k;
  return clamp01(v - d * clamp01(t));
}

BYOL_HD Rgb adjust_hue(Rgb c, float delta) {
  const float v = max3(c.r, c.g, c.b);
  const float d = v - min3(c.r, c.g, c.b);
  const float inv_d = d > 0.0f ? 1.0f / d : 0.0f;  // gray: every channel comes out as V
  float h =
      v == c.r ? (c.g - c.b) * inv_d : (v == c.g ? (c.b - c.r) * inv_d + 2.0f : (c.r - c.g) * inv_d + 4.0f);
  h += delta * 6.0f;
  h -= 6.0f * floorf(h * (1.0f / 6.0f));  // [0, 6)
  h = h >= 6.0f ? 0.0f : h;
  return {hue_channel(5.0f, h, v, d), hue_channel(3.0f, h, v, d), hue_channel(1.0f, h, v, d)};
}

// ITU-R 601 luma with the weights of tf.image.rgb_to_grayscale / the official BYOL code.
BYOL_HD float grayscale(Rgb c) {
  return 0.2989f * c.r + 0.5870f * c.g + 0.1140f * c.b;
}

// Solarize: values at or above the threshold are inverted.
BYOL_HD float solarize(float x, float threshold) {
  return x < threshold ? x : 1.0f - x;
}

// Keys' cubic convolution kernel with a = -0.5 (PIL's and TensorFlow's bicubic). Interpolating:
// w(0) = 1 and w(+-1) = w(+-2) = 0; the taps of any shift sum to one.
BYOL_HD float cubic_weight(float x) {
  const float a = -0.5f;
  x = fabsf(x);
  if (x < 1.0f) return ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
  if (x < 2.0f) return (((x - 5.0f) * x + 8.0f) * x - 4.0f) * a;
  return 0.0f;
}

// Where one view's uint8 source image [height, width, channels] (channels 1 or 3) starts in a packed buffer.
struct AugmentSource {
  int64_t offset;  // bytes
  int32_t height, width, channels;
};

// The source taps of output sample o of an antialiased bicubic resample of [origin, origin + length) (source
// pixels, pixel j covering [j, j + 1)) of a src_size-pixel axis onto out_size samples, as PIL computes them:
// the kernel is stretched by the scale when shrinking, and taps outside the crop window are dropped. The
// weights are cubic_weight((j + 0.5 - center) / stretch) for j in [first, first + count), renormalised by
// their sum; with no tap or a zero sum, the nearest pixel alone (nearest()).
struct ResampleTaps {
  int first, count;
  float center, stretch;
  int lo, hi;  // the crop window's pixels, [lo, hi)
  BYOL_HD float weight(int j) const {
    return cubic_weight((static_cast<float>(j) + 0.5f - center) / stretch);
  }
  BYOL_HD int nearest() const {
    const int n = static_cast<int>(floorf(center));
    return n < lo ? lo : (n > hi - 1 ? hi - 1 : n);
  }
};

// At most this many taps per output sample.
BYOL_HD int resample_max_taps(float length, int out_size) {
  const float scale = length / static_cast<float>(out_size);
  const float stretch = scale > 1.0f ? scale : 1.0f;
  return static_cast<int>(ceilf(2.0f * stretch)) * 2 + 1;
}

// The crop window's pixels [lo, hi) on a src_size-pixel axis: every tap of resample_taps, and its nearest
// pixel, lies inside. Only a floor, a ceil and one addition, so host and device agree exactly (no
// multiply-add a compiler could contract).
BYOL_HD void resample_window(float origin, float length, int src_size, int& lo, int& hi) {
  lo = static_cast<int>(floorf(origin));
  lo = lo > 0 ? lo : 0;
  hi = static_cast<int>(ceilf(origin + length));
  hi = hi < src_size ? hi : src_size;
  lo = lo < src_size - 1 ? lo : src_size - 1;
  hi = hi > lo + 1 ? hi : lo + 1;
}

BYOL_HD ResampleTaps resample_taps(float origin, float length, int src_size, int out_size, int o) {
  const float scale = length / static_cast<float>(out_size);
  const float stretch = scale > 1.0f ? scale : 1.0f;
  const float support = 2.0f * stretch;
  const int max_taps = resample_max_taps(length, out_size);
  int lo, hi;
  resample_window(origin, length, src_size, lo, hi);
  const float center = origin + (static_cast<float>(o) + 0.5f) * scale;
  int j0 = static_cast<int>(floorf(center - support + 0.5f));
  j0 = j0 > lo ? j0 : lo;
  int j1 = static_cast<int>(floorf(center + support + 0.5f));
  j1 = j1 < hi ? j1 : hi;
  j1 = j1 < j0 + max_taps ? j1 : j0 + max_taps;
  return {j0, j1 - j0, center, stretch, lo, hi};
}

// Unnormalised Gaussian tap at integer offset k; the caller divides by the sum over the kernel.
BYOL_HD float gaussian_weight(int k, float sigma) {
  const float x = static_cast<float>(k) / sigma;
  return expf(-0.5f * x * x);
}

// Blur kernel radius for an output of the given side: the official BYOL code takes kernel_size =
// side * fraction (truncated; side / 10 by default), then radius = kernel_size / 2 and a kernel of
// 2 * radius + 1 taps: 23 taps at 224, 3 taps at 32.
BYOL_HD int blur_radius(int side, float fraction) {
  const int kernel_size = static_cast<int>(static_cast<float>(side) * fraction);
  return kernel_size / 2;
}

// Mirror an index into [0, n) without repeating the edge pixel (torchvision's "reflect" padding),
// for any distance outside the range.
BYOL_HD int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// Mean/std normalisation, the last step of every view.
BYOL_HD float normalize(float x, float mean, float inv_std) {
  return (x - mean) * inv_std;
}

}  // namespace byol::math
