// Compiles the augmentation's per-pixel formulas for the device, so a change that makes one of them
// host-only breaks the CUDA build rather than the first GPU run. Nothing here is launched.
#include "engine/math/augment.h"

namespace byol::math {

__device__ float augment_device_compile_check(float x, float y, int i) {
  const Rgb c{x, y, 0.5f * x};
  const Rgb s = adjust_saturation(c, y), h = adjust_hue(c, y);
  float r =
      s.r + h.g + grayscale(c) + solarize(x, 0.5f) + adjust_brightness(x, y) + adjust_contrast(x, y, 1.2f);
  r += cubic_weight(x) + gaussian_weight(i, y) + normalize(x, y, 2.0f) +
       float(reflect_index(i, 7) + blur_radius(i, x));
  return r;
}

}  // namespace byol::math
