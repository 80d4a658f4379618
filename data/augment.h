// The BYOL augmentations (paper, appendix B; the official code's augmentations.py) and the
// evaluation transforms, split into two halves so that a GPU kernel can replay the CPU's work:
//
//   sample_view(options, source size, output size, generator) -> AugmentParams   (host, seeded)
//   apply_view(image, params, ...) -> float HWC view                             (CPU; a CUDA twin is issue
//   18)
//
// One view of one image, in order:
//   1. crop: random resized crop (area U(0.08, 1) of the source, aspect log-U(3/4, 4/3), torchvision's
//      10 attempts then a centre crop at the clamped aspect), or a centre crop for evaluation;
//      bicubic resize of the crop to the output size (Keys a = -0.5, antialiased when shrinking, as
//      PIL does), clipped to [0, 1];
//   2. horizontal flip with p 0.5;
//   3. colour jitter with p 0.8: brightness +U(-0.4, 0.4) (additive, as the official code), contrast
//      xU(0.6, 1.4) around each channel's mean, saturation xU(0.8, 1.2), hue +U(-0.1, 0.1) turns, in a
//      random order, each clipped to [0, 1]; JitterStyle::torchvision instead scales brightness by
//      U(0.6, 1.4) and takes contrast around the image's grey mean (torchvision's ColorJitter; it learns
//      more on small images, docs/results.md);
//   4. grayscale with p 0.2 (0.2989 R + 0.5870 G + 0.1140 B in all three channels);
//   5. Gaussian blur with p 1.0 / 0.1 (view 1 / 2), sigma U(0.1, 2.0), 2 * (side / 10 / 2) + 1 taps
//      (23 at 224, 3 at 32), reflect padding (so a constant image stays constant);
//   6. solarize with p 0.0 / 0.2: x >= 0.5 becomes 1 - x;
//   7. normalisation (x - mean) / std per channel.
// Every probability and strength is a field of ViewOptions, so the paper's ablations can be run.
//
// Randomness: every draw for an image comes from that image's own generator (image_generator(seed,
// epoch, index)), so the views do not depend on thread count, batch composition or sharding.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "data/image.h"
#include "engine/math/augment.h"

namespace byol::data {

enum class CropMode : uint8_t { random_resized, center };

// Brightness and contrast conventions of the colour jitter (saturation and hue are the same in both):
//   official     brightness x + delta, contrast around each channel's mean (tf.image, the official code)
//   torchvision  brightness x * (1 + delta), contrast around the mean of the image's grey version
//                (torchvision's ColorJitter, which most PyTorch BYOL implementations use)
enum class JitterStyle : uint8_t { official = 0, torchvision = 1 };
// "official" or "torchvision"; anything else is an error naming the value.
JitterStyle parse_jitter_style(const std::string& name);
const char* jitter_style_name(JitterStyle style);

struct ViewOptions {
  CropMode crop = CropMode::random_resized;
  double area_min = 0.08, area_max = 1.0;                 // fraction of the source area
  double aspect_min = 3.0 / 4.0, aspect_max = 4.0 / 3.0;  // width / height, drawn log-uniformly
  int crop_attempts = 10;
  double center_fraction = 0.875;  // CropMode::center: crop side / shorter source side (224 / 256)
  double flip_p = 0.5;
  double jitter_p = 0.8;
  double brightness = 0.4;  // delta ~ U(-b, b)
  double contrast = 0.4;    // factor ~ U(1 - c, 1 + c)
  double saturation = 0.2;  // factor ~ U(1 - s, 1 + s)
  double hue = 0.1;         // delta ~ U(-h, h) turns
  bool jitter_random_order = true;
  JitterStyle jitter_style = JitterStyle::official;
  double grayscale_p = 0.2;
  double blur_p = 1.0;
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  double blur_kernel_fraction = 0.1;  // kernel size / output side
  double solarize_p = 0.0;
  double solarize_threshold = 0.5;

  static ViewOptions byol_view1();                          // blur p 1.0, solarize p 0.0
  static ViewOptions byol_view2();                          // blur p 0.1, solarize p 0.2
  static ViewOptions crop_flip();                           // linear-evaluation training
  static ViewOptions center_crop(double fraction = 0.875);  // evaluation: no randomness
};

// Per-channel mean and standard deviation of the dataset, in [0, 1] units.
struct Normalization {
  std::array<float, 3> mean{0.0f, 0.0f, 0.0f};
  std::array<float, 3> std{1.0f, 1.0f, 1.0f};

  static Normalization none() { return {}; }
  static Normalization imagenet() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
  static Normalization cifar10() { return {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}}; }
  static Normalization cifar100() { return {{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}}; }
  static Normalization stl10() { return {{0.4467f, 0.4398f, 0.4066f}, {0.2603f, 0.2566f, 0.2713f}}; }
  static Normalization fashion_mnist() { return {{0.2860f, 0.2860f, 0.2860f}, {0.3530f, 0.3530f, 0.3530f}}; }

  // The presets above by the name configs and command lines use (kNames); nullopt for any other name.
  static std::optional<Normalization> named(const std::string& name);
  static constexpr const char* kNames = "fashion-mnist, cifar10, cifar100, stl10, imagenet or none";
};

// What the loader produces per image: one output per entry of `views`, each [height, width, 3].
struct AugmentOptions {
  int height = 224, width = 224;
  std::vector<ViewOptions> views{ViewOptions::byol_view1(), ViewOptions::byol_view2()};
  Normalization normalization = Normalization::imagenet();

  static AugmentOptions byol(int side, Normalization norm);  // two views, the recipe
  static AugmentOptions eval(int side, Normalization norm, double center_fraction = 0.875);
  static AugmentOptions crop_flip(int side, Normalization norm);  // linear-evaluation training
};

// Smallest shorter side a decoder may produce for these options without the smallest possible crop
// (or the centre crop) having fewer source pixels than output pixels; the JPEG decoder's DCT scaling
// uses it. 0 means full resolution.
int decode_min_side(const AugmentOptions& options);

using math::JitterOp;
using math::kBrightness;
using math::kContrast;
using math::kHue;
using math::kSaturation;
static_assert(static_cast<uint8_t>(JitterStyle::official) == math::kJitterOfficial &&
              static_cast<uint8_t>(JitterStyle::torchvision) == math::kJitterTorchvision);

// The random parameters of one view of one image (engine/math/augment.h, so the CUDA kernel reads the same
// struct): everything apply_view needs besides the image and the output size.
using AugmentParams = math::AugmentParams;
static_assert(std::is_trivially_copyable_v<AugmentParams> && std::is_standard_layout_v<AugmentParams>);

// The identity view: the whole source, no flip, no colour change, no blur, no solarize.
AugmentParams identity_params(int src_h, int src_w);

// SplitMix64-mixed generator for one image of one epoch.
std::mt19937_64 image_generator(uint64_t seed, int64_t epoch, int64_t index);
uint64_t mix_seed(uint64_t a, uint64_t b);
double uniform01(std::mt19937_64& gen);  // 53 random bits, [0, 1): the same on every platform

struct CropBox {
  int y, x, h, w;
};
// torchvision's RandomResizedCrop.get_params: `attempts` tries of area U(area) and log-uniform aspect
// (width / height); the first box that fits wins; otherwise the largest centred box whose aspect is
// clamped into [aspect_min, aspect_max].
CropBox random_resized_crop(int src_h, int src_w, const ViewOptions& o, std::mt19937_64& gen);

AugmentParams sample_view(const ViewOptions& options, int src_h, int src_w, int out_h, int out_w,
                          std::mt19937_64& gen);

// Scratch memory reused across calls (one per thread).
struct AugmentWorkspace {
  std::vector<float> rows, pad;
  std::vector<int> tap_start_x, tap_count_x, tap_start_y, tap_count_y;
  std::vector<float> tap_weight_x, tap_weight_y;
};

struct FloatImageView {
  const float* data = nullptr;  // [height, width, channels], values in [0, 1]
  int height = 0, width = 0, channels = 0;
};

// Applies one view: writes `out` [out_h, out_w, 3], normalised. Sources have 1 or 3 channels.
void apply_view(const ImageView& src, const AugmentParams& p, int out_h, int out_w, const Normalization& norm,
                float* out, AugmentWorkspace& ws);
void apply_view(const FloatImageView& src, const AugmentParams& p, int out_h, int out_w,
                const Normalization& norm, float* out, AugmentWorkspace& ws);

// The steps of apply_view, exposed for tests and tools. Images are float [h, w, 3] in [0, 1].
void resize_crop(const ImageView& src, float crop_y, float crop_x, float crop_h, float crop_w, bool flip,
                 int out_h, int out_w, float* out, AugmentWorkspace& ws);
void resize_crop(const FloatImageView& src, float crop_y, float crop_x, float crop_h, float crop_w, bool flip,
                 int out_h, int out_w, float* out, AugmentWorkspace& ws);
void color_jitter(float* img, int h, int w, const AugmentParams& p);  // the four ops in p.jitter_order
void to_grayscale(float* img, int h, int w);
void gaussian_blur(float* img, int h, int w, int radius, float sigma, AugmentWorkspace& ws);
void solarize(float* img, int h, int w, float threshold);
void normalize(float* img, int h, int w, const Normalization& norm);

// The normalised Gaussian taps of a blur (2 * radius + 1 of them), as apply_view uses them.
std::vector<float> gaussian_kernel(int radius, float sigma);

// Resizes a uint8 image so its shorter side is `short_side` (0: keep), then centre-crops to
// crop_h x crop_w (0: no crop); bicubic as apply_view, rounded back to uint8 (byol-pack uses this).
// Returns 3 channels.
void resize_short_side_center_crop(const ImageView& src, int short_side, int crop_h, int crop_w,
                                   std::vector<uint8_t>& out, int* out_h, int* out_w, AugmentWorkspace& ws);

}  // namespace byol::data
