// Kernel lab: the BYOL augmentations on the GPU — the shipping kernel of engine/cuda/augment.cu (one block
// per view: crop + bicubic resize, flip, colour jitter, grayscale, blur, solarize, normalise), validated
// view by view against the CPU (data::apply_view) on a small batch, then timed on a training-sized one.
//
//   build: cmake --build build --target augment_lab
//   run:   build/benchmarks/augment_lab [views side] [--json FILE]   (default 256 views at 224 px)
//
// Versions:
//   1. shipping: one block of 256 threads per view, the view in global memory between the steps.
// Bytes counted: the uint8 pixels of each view's crop window read once (math::resample_window on both axes:
// the rows and columns the resize reads; the rest of a source is never touched) and the float outputs written
// once (the compulsory traffic; the resize rows and the blur's pass through the scratch come on top).
// Views/s are printed too: one BYOL image is two views.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "benchmarks/lab_main.h"
#include "data/augment.h"
#include "engine/cuda/augment.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/timing.h"

using namespace byol;

namespace {

// One batch on both sides: the sources (each h x w x 3, smooth plus noise), the views' parameters
// (alternating the recipe's view 1 and view 2), the CPU's outputs when `cpu` is set, and device copies.
struct Batch {
  std::vector<uint8_t> packed;
  std::vector<kernels::AugmentSource> sources;
  std::vector<math::AugmentParams> params;
  std::vector<float> cpu_out;
  kernels::AugmentScratchPlan plan;
  cuda::DeviceBuffer d_pixels, d_sources, d_params, d_offsets, d_out, d_scratch;
};

Batch make_batch(int views, int side, int src_h, int src_w, bool cpu, const data::Normalization& norm) {
  Batch b;
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> u(0, 1);
  const data::ViewOptions opts[2] = {data::ViewOptions::byol_view1(), data::ViewOptions::byol_view2()};
  data::AugmentWorkspace ws;
  for (int v = 0; v < views; ++v) {
    const size_t at = b.packed.size();
    b.packed.resize(at + size_t(src_h) * src_w * 3);
    const double f = 1 + 4 * u(gen);
    for (int y = 0; y < src_h; ++y)
      for (int x = 0; x < src_w; ++x)
        for (int k = 0; k < 3; ++k) {
          const double val =
              0.5 + 0.35 * std::sin(f * (y + 2 * x) / src_w * 6.28 + k) + 0.15 * (u(gen) - 0.5);
          b.packed[at + (size_t(y) * src_w + x) * 3 + k] =
              uint8_t(std::lround(std::clamp(val, 0.0, 1.0) * 255));
        }
    b.sources.push_back({static_cast<int64_t>(at), src_h, src_w, 3});
    b.params.push_back(data::sample_view(opts[v % 2], src_h, src_w, side, side, gen));
    if (cpu) {
      const size_t out_at = b.cpu_out.size();
      b.cpu_out.resize(out_at + size_t(side) * side * 3);
      data::apply_view(data::ImageView{b.packed.data() + at, src_h, src_w, 3}, b.params.back(), side, side,
                       norm, b.cpu_out.data() + out_at, ws);
    }
  }
  b.plan = kernels::plan_augment_scratch(b.params, b.sources, side, side);
  b.d_pixels = cuda::device_copy_of(b.packed), b.d_sources = cuda::device_copy_of(b.sources),
  b.d_params = cuda::device_copy_of(b.params);
  b.d_offsets = cuda::device_copy_of(b.plan.offsets);
  b.d_out = cuda::DeviceBuffer(sizeof(float) * size_t(views) * side * side * 3);
  b.d_scratch = cuda::DeviceBuffer(sizeof(float) * std::max<int64_t>(b.plan.total_floats, 1));
  return b;
}

// The source bytes the views read: each one's crop window, rows x columns x channels.
double window_bytes(const Batch& b) {
  double bytes = 0;
  for (size_t v = 0; v < b.params.size(); ++v) {
    const math::AugmentParams& p = b.params[v];
    const kernels::AugmentSource& s = b.sources[v];
    int y0, y1, x0, x1;
    math::resample_window(p.crop_y, p.crop_h, s.height, y0, y1);
    math::resample_window(p.crop_x, p.crop_w, s.width, x0, x1);
    bytes += double(y1 - y0) * (x1 - x0) * s.channels;
  }
  return bytes;
}

void launch(Batch& b, int side, const data::Normalization& norm) {
  kernels::augment_views(b.d_pixels.as<uint8_t>(), b.d_sources.as<kernels::AugmentSource>(),
                         b.d_params.as<math::AugmentParams>(), b.d_offsets.as<int64_t>(),
                         static_cast<int>(b.params.size()), side, side, norm.mean.data(), norm.std.data(),
                         b.plan.max_blur_radius, b.d_out.as<float>(), b.d_scratch.as<float>(),
                         cuda::compute_stream());
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const int views = sizes.empty() ? 256 : static_cast<int>(sizes[0]);
  const int side = sizes.empty() ? 224 : static_cast<int>(sizes[1]);
  const int src_h = side * 3 / 2, src_w = side * 2;  // what the JPEG decoder's DCT scaling leaves, about
  report.options = {{"views", views}, {"side", side}, {"source_h", src_h}, {"source_w", src_w}};
  const data::Normalization norm = data::Normalization::imagenet();
  std::printf("augment_lab: %d views at %dx%d from %dx%d sources\n", views, side, side, src_h, src_w);

  // Validation: 64 views at 64 px against the CPU (the bounds of tests/test_cuda_augment.cpp).
  bool valid = false;
  {
    Batch b = make_batch(64, 64, 96, 128, true, norm);
    // All bits set: an output value the kernel does not write reads back as NaN and fails the check.
    BYOL_CUDA_CHECK(cudaMemsetAsync(b.d_out.get(), 0xFF, b.d_out.bytes(), cuda::compute_stream()));
    launch(b, 64, norm);
    std::vector<float> got(b.cpu_out.size());
    BYOL_CUDA_CHECK(cudaMemcpyAsync(got.data(), b.d_out.get(), sizeof(float) * got.size(),
                                    cudaMemcpyDeviceToHost, cuda::compute_stream()));
    BYOL_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
    double sum = 0, worst = 0;
    size_t far = 0;
    bool finite = true;
    for (size_t i = 0; i < got.size(); ++i) {
      finite = finite && std::isfinite(got[i]);
      const double d = std::abs(double(got[i]) - b.cpu_out[i]);
      sum += d, worst = std::max(worst, d), far += d > 1e-3;
    }
    const double mean = sum / got.size();
    valid = finite && mean < 1e-5 && far <= got.size() / 1000;
    report.validated("augment_views", valid,
                     {{"mean_abs_error", mean}, {"max_abs_error", worst}, {"values_over_1e-3", far}});
    std::printf("validation vs CPU (64 views at 64 px): %s (mean |diff| %.3g, max %.3g, %zu values > 1e-3)\n",
                valid ? "OK" : "FAILED", mean, worst, far);
  }
  lab::timing_anyway(valid);

  report.measure_copy_bandwidth();
  Batch b = make_batch(views, side, src_h, src_w, false, norm);
  {  // the CPU's rate on this host, one thread, the same views (what a loader worker does per core)
    const int n = std::min(views, 32);
    std::vector<float> out(size_t(side) * side * 3);
    data::AugmentWorkspace ws;
    const auto t0 = std::chrono::steady_clock::now();
    for (int v = 0; v < n; ++v) {
      const kernels::AugmentSource& s = b.sources[v];
      data::apply_view(data::ImageView{b.packed.data() + s.offset, s.height, s.width, s.channels},
                       b.params[v], side, side, norm, out.data(), ws);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.rows.push_back(
        {{"name", "cpu apply_view, one thread"}, {"ms_per_view", 1e3 * secs / n}, {"views_per_s", n / secs}});
    std::printf("CPU apply_view, one thread: %.0f views/s\n", n / secs);
  }
  const double bytes = window_bytes(b) + 4.0 * views * side * side * 3;
  const cuda::Timing t = cuda::time_on_compute_stream([&] { launch(b, side, norm); });
  report.timing("v1 augment (block per view)", t, bytes, {{"views_per_s", views / (t.median_ms * 1e-3)}});
  std::printf("  %.0f views/s (%.0f BYOL images/s of two views)\n", views / (t.median_ms * 1e-3),
              views / (t.median_ms * 1e-3) / 2);
  return valid ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "augment_lab",
                       "augment_lab [views side] [--json FILE]   (default 256 224)", {0, 2}, run);
}
