#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/common.h"
#include "engine/cuda/augment.cuh"
#include "engine/cuda/cuda_check.h"

namespace byol::kernels {
namespace {

constexpr int kAugmentThreads = 256;

// The taps of one output sample with the CPU's degenerate-window rule (data::compute_taps): the nearest
// pixel alone when no tap has weight.
struct Taps {
  math::ResampleTaps t;
  int first, count;
  float sum;
  bool nearest;
  // Divided, not multiplied by 1 / sum: the CPU normalises its tap table the same way.
  __device__ float weight(int k) const { return nearest ? 1.0f : t.weight(first + k) / sum; }
};

__device__ Taps taps_of(float origin, float length, int src_size, int out_size, int o) {
  Taps r;
  r.t = math::resample_taps(origin, length, src_size, out_size, o);
  float sum = 0.0f;
  for (int j = r.t.first; j < r.t.first + r.t.count; ++j) sum += r.t.weight(j);
  r.nearest = r.t.count <= 0 || sum == 0.0f;
  r.first = r.nearest ? r.t.nearest() : r.t.first;
  r.count = r.nearest ? 1 : r.t.count;
  r.sum = r.nearest ? 1.0f : sum;
  return r;
}

// Per-channel sums of an [n, 3] image over the block, in double (the CPU's contrast mean).
__device__ void channel_sums(const float* img, int n, double* red, double out[3]) {
  double s0 = 0, s1 = 0, s2 = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    s0 += img[3 * i];
    s1 += img[3 * i + 1];
    s2 += img[3 * i + 2];
  }
  red[threadIdx.x] = s0;
  red[blockDim.x + threadIdx.x] = s1;
  red[2 * blockDim.x + threadIdx.x] = s2;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      for (int c = 0; c < 3; ++c)
        red[c * blockDim.x + threadIdx.x] += red[c * blockDim.x + threadIdx.x + stride];
    __syncthreads();
  }
  for (int c = 0; c < 3; ++c) out[c] = red[c * blockDim.x];
  __syncthreads();  // red is free again
}

__global__ void __launch_bounds__(kAugmentThreads)
    augment_views_kernel(const uint8_t* __restrict__ pixels, const AugmentSource* __restrict__ sources,
                         const math::AugmentParams* __restrict__ params, const int64_t* __restrict__ offsets,
                         int out_h, int out_w, float3 mean, float3 inv_std, float* __restrict__ out,
                         float* __restrict__ scratch) {
  __shared__ double red[3 * kAugmentThreads];
  __shared__ float blur_k[2 * kMaxAugmentBlurRadius + 1];
  const int v = blockIdx.x;
  const AugmentSource src = sources[v];
  const math::AugmentParams p = params[v];
  const uint8_t* img = pixels + src.offset;
  const int row_len = out_w * 3, n = out_h * out_w;
  float* o = out + static_cast<int64_t>(v) * n * 3;
  float* tmp = scratch + offsets[v];

  // 1. Horizontal resample of the crop window's rows (every vertical tap reads inside it), in source units
  // (0..255).
  int y_lo, y_hi;
  math::resample_window(p.crop_y, p.crop_h, src.height, y_lo, y_hi);
  for (int i = threadIdx.x; i < (y_hi - y_lo) * out_w; i += blockDim.x) {
    const int y = y_lo + i / out_w, c = i % out_w;
    const Taps t = taps_of(p.crop_x, p.crop_w, src.width, out_w, p.flip ? out_w - 1 - c : c);
    const uint8_t* row = img + static_cast<int64_t>(y) * src.width * src.channels;
    float a0 = 0, a1 = 0, a2 = 0;
    for (int k = 0; k < t.count; ++k) {
      const float w = t.weight(k);
      const uint8_t* px = row + static_cast<int64_t>(t.first + k) * src.channels;
      if (src.channels == 3) {
        a0 += w * float(px[0]);
        a1 += w * float(px[1]);
        a2 += w * float(px[2]);
      } else {
        a0 += w * float(px[0]);
      }
    }
    if (src.channels != 3) a1 = a2 = a0;
    float* r = tmp + static_cast<int64_t>(y - y_lo) * row_len + 3 * c;
    r[0] = a0, r[1] = a1, r[2] = a2;
  }
  __syncthreads();
  // 2. Vertical resample, back to [0, 1], clipped.
  for (int i = threadIdx.x; i < 3 * n; i += blockDim.x) {
    const int y = i / row_len, x = i % row_len;
    const Taps t = taps_of(p.crop_y, p.crop_h, src.height, out_h, y);
    const float* r = tmp + static_cast<int64_t>(t.first - y_lo) * row_len + x;
    float d = 0;
    for (int k = 0; k < t.count; ++k) d += t.weight(k) * r[k * row_len];
    o[i] = math::clamp01(d * (1.0f / 255.0f));
  }
  __syncthreads();

  // 3. Colour jitter in the drawn order, each op over the whole view before the next.
  if (p.jitter) {
    for (int k = 0; k < 4; ++k) {
      const int op = p.jitter_order[k];
      if (op == math::kBrightness) {
        const bool scale = p.jitter_style == math::kJitterTorchvision;
        const float factor = 1.0f + p.brightness;
        for (int i = threadIdx.x; i < 3 * n; i += blockDim.x)
          o[i] = scale ? math::scale_brightness(o[i], factor) : math::adjust_brightness(o[i], p.brightness);
      } else if (op == math::kContrast) {
        double sums[3];
        channel_sums(o, n, red, sums);
        float m[3] = {float(sums[0] / n), float(sums[1] / n), float(sums[2] / n)};
        if (p.jitter_style == math::kJitterTorchvision)
          m[0] = m[1] = m[2] = math::grayscale({m[0], m[1], m[2]});
        for (int i = threadIdx.x; i < 3 * n; i += blockDim.x)
          o[i] = math::adjust_contrast(o[i], m[i % 3], p.contrast);
      } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
          const math::Rgb c{o[3 * i], o[3 * i + 1], o[3 * i + 2]};
          const math::Rgb r =
              op == math::kSaturation ? math::adjust_saturation(c, p.saturation) : math::adjust_hue(c, p.hue);
          o[3 * i] = r.r, o[3 * i + 1] = r.g, o[3 * i + 2] = r.b;
        }
      }
      __syncthreads();
    }
  }
  // 4. Grayscale.
  if (p.grayscale) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const float g = math::grayscale({o[3 * i], o[3 * i + 1], o[3 * i + 2]});
      o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = g;
    }
    __syncthreads();
  }
  // 5. Gaussian blur, separable, reflect padding: horizontal into the scratch, vertical back.
  if (p.blur && p.blur_radius > 0) {
    // blur_k holds 2 kMaxAugmentBlurRadius + 1 weights: the launcher checks the batch's radii against it,
    // and this keeps a parameter set that slipped past that check inside the array.
    const int radius = min(p.blur_radius, kMaxAugmentBlurRadius), taps = 2 * radius + 1;
    if (threadIdx.x == 0) {  // the CPU's gaussian_kernel: one sum, in order
      float sum = 0;
      for (int i = -radius; i <= radius; ++i)
        sum += blur_k[i + radius] = math::gaussian_weight(i, p.blur_sigma);
      for (int i = 0; i < taps; ++i) blur_k[i] /= sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 3 * n; i += blockDim.x) {
      const int y = i / row_len, x = (i % row_len) / 3, c = i % 3;
      const float* row = o + static_cast<int64_t>(y) * row_len + c;
      float acc = 0;
      for (int t = 0; t < taps; ++t) acc += blur_k[t] * row[3 * math::reflect_index(x - radius + t, out_w)];
      tmp[i] = acc;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 3 * n; i += blockDim.x) {
      const int y = i / row_len, x = i % row_len;
      float acc = 0;
      for (int t = 0; t < taps; ++t)
        acc +=
            blur_k[t] * tmp[static_cast<int64_t>(math::reflect_index(y + t - radius, out_h)) * row_len + x];
      o[i] = acc;
    }
    __syncthreads();
  }
  // 6. Solarize and 7. normalise, per value.
  const float mean3[3] = {mean.x, mean.y, mean.z}, inv3[3] = {inv_std.x, inv_std.y, inv_std.z};
  for (int i = threadIdx.x; i < 3 * n; i += blockDim.x) {
    float x = o[i];
    if (p.solarize) x = math::solarize(x, p.solarize_threshold);
    o[i] = math::normalize(x, mean3[i % 3], inv3[i % 3]);
  }
}

}  // namespace

int64_t augment_scratch_floats(const math::AugmentParams& p, const AugmentSource& src, int out_h, int out_w) {
  // The crop window's rows, which the kernel resamples horizontally: computed exactly alike on both sides.
  int y_lo, y_hi;
  math::resample_window(p.crop_y, p.crop_h, src.height, y_lo, y_hi);
  const int64_t rows = static_cast<int64_t>(y_hi - y_lo) * out_w * 3;
  return std::max<int64_t>(rows, static_cast<int64_t>(out_h) * out_w * 3);
}

AugmentScratchPlan plan_augment_scratch(const std::vector<math::AugmentParams>& params,
                                        const std::vector<AugmentSource>& sources, int out_h, int out_w) {
  BYOL_CHECK(params.size() == sources.size(), "plan_augment_scratch: ", params.size(), " views but ",
             sources.size(), " sources");
  AugmentScratchPlan plan;
  for (size_t v = 0; v < params.size(); ++v) {
    plan.offsets.push_back(plan.total_floats);
    // 16-float alignment for each view's scratch
    plan.total_floats += (augment_scratch_floats(params[v], sources[v], out_h, out_w) + 15) / 16 * 16;
    if (params[v].blur) plan.max_blur_radius = std::max(plan.max_blur_radius, int(params[v].blur_radius));
  }
  return plan;
}

void augment_views(const uint8_t* pixels, const AugmentSource* sources, const math::AugmentParams* params,
                   const int64_t* scratch_offsets, int views, int out_h, int out_w, const float mean[3],
                   const float std[3], int max_blur_radius, float* out, float* scratch, cudaStream_t stream) {
  BYOL_CHECK(out_h > 0 && out_w > 0, "augment_views: expected a positive output size, got ", out_h, "x",
             out_w);
  BYOL_CHECK(max_blur_radius <= kMaxAugmentBlurRadius, "augment_views: blur radius ", max_blur_radius,
             " is above the kernel's ", kMaxAugmentBlurRadius, " (an output side above about 2,550 pixels)");
  if (views <= 0) return;
  const float3 m{mean[0], mean[1], mean[2]};
  const float3 inv{1.0f / std[0], 1.0f / std[1], 1.0f / std[2]};
  augment_views_kernel<<<views, kAugmentThreads, 0, stream>>>(pixels, sources, params, scratch_offsets, out_h,
                                                              out_w, m, inv, out, scratch);
  BYOL_CUDA_CHECK_LAUNCH();
}

}  // namespace byol::kernels
