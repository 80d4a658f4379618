// The BYOL augmentations on the GPU (issue 18): one thread block per view applies the same AugmentParams
// (data::sample_view draws them on the host) to a uint8 source image on the device, in the CPU's order and
// with its per-pixel formulas (engine/math/augment.h; data::apply_view is the reference):
//   crop + antialiased bicubic resize (PIL's taps, math::resample_taps), flip, colour jitter in the drawn
//   order (contrast's per-channel means reduced in double, as the CPU), grayscale, Gaussian blur with
//   reflect padding, solarize, normalisation; output [views, out_h, out_w, 3] float, NHWC.
// Sources are packed back to back (uint8 [h, w, c], c = 1 or 3) and described by AugmentSource. Each view
// needs augment_scratch_floats(...) floats of device scratch (the resize's intermediate rows, then the
// blur's horizontal pass); plan_augment_scratch lays them out. No host synchronisation.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "engine/math/augment.h"

namespace byol::kernels {

using math::AugmentSource;

constexpr int kMaxAugmentBlurRadius = 127;  // 255 taps in shared memory

// Scratch floats one view needs.
int64_t augment_scratch_floats(const math::AugmentParams& p, const AugmentSource& src, int out_h, int out_w);

struct AugmentScratchPlan {
  std::vector<int64_t> offsets;  // per view, in floats
  int64_t total_floats = 0;
  int max_blur_radius = 0;  // over the views that blur
};
// Host: the scratch layout of a batch of views (and the largest blur, which augment_views checks).
AugmentScratchPlan plan_augment_scratch(const std::vector<math::AugmentParams>& params,
                                        const std::vector<AugmentSource>& sources, int out_h, int out_w);

// Device pointers: pixels, sources, params and scratch_offsets (one per view), out and scratch. mean and
// std are the normalisation's per-channel values (host). Fails (before launching) on sizes out of range
// or a blur radius above kMaxAugmentBlurRadius.
void augment_views(const uint8_t* pixels, const AugmentSource* sources, const math::AugmentParams* params,
                   const int64_t* scratch_offsets, int views, int out_h, int out_w, const float mean[3],
                   const float std[3], int max_blur_radius, float* out, float* scratch, cudaStream_t stream);

}  // namespace byol::kernels
