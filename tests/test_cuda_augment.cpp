// The CUDA augmentation kernel (engine/cuda/augment.cu, issue 18) against the CPU's data::apply_view, view by
// view, from the same uint8 sources and the same AugmentParams.
//
// [cuda] (skipped without a GPU): RGB and gray sources of several sizes, crops that shrink and enlarge,
// flips, both jitter styles in drawn orders, grayscale, blur (3 taps at 32 px, 9 at 96 px, 23 at 224 px from
// sources up to 640 px, as in an ImageNet run), solarize;
// square and non-square outputs. Both sides evaluate the same per-pixel formulas (engine/math/augment.h) in
// float, in the same order, but the GPU contracts multiply-adds into FMAs, so values differ by float
// rounding; a clip or a solarize threshold can then fall the other way for a value sitting on it. The
// bounds: mean absolute difference below 1e-5 (rounding), and at most 0.1 % of the values more than 1e-3
// apart (threshold flips), printed per case so a GPU run's log carries the figures.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "data/augment.h"
#if BYOL_WITH_CUDA
#include <cuda_runtime_api.h>

#include "data/loader.h"
#include "engine/cuda/augment.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/upload.h"
#endif

using namespace byol;

#if BYOL_WITH_CUDA
namespace {

struct Source {
  int h, w, c;
  std::vector<uint8_t> pixels;
};

// A smooth random image plus noise (natural images are mostly smooth; the noise exercises every tap).
Source make_source(int h, int w, int c, std::mt19937_64& gen) {
  Source s{h, w, c, std::vector<uint8_t>(size_t(h) * w * c)};
  std::uniform_real_distribution<double> u(0, 1);
  const double fy = 1 + 5 * u(gen), fx = 1 + 5 * u(gen), phase = 6.28 * u(gen);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        const double v =
            0.5 + 0.35 * std::sin(fy * y / h * 6.28 + fx * x / w * 6.28 + phase + k) + 0.15 * (u(gen) - 0.5);
        s.pixels[(size_t(y) * w + x) * c + k] =
            static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255));
      }
  return s;
}

// Every view of sources x options (reps times, fresh parameters each time) at out_h x out_w, made by the
// kernel and by data::apply_view, compared with the bounds above.
void compare_views(const std::vector<Source>& sources, const std::vector<data::ViewOptions>& options,
                   int out_h, int out_w, int reps, std::mt19937_64& gen) {
  const data::Normalization norm = data::Normalization::imagenet();
  std::vector<math::AugmentParams> params;
  std::vector<kernels::AugmentSource> descs;
  std::vector<uint8_t> packed;
  std::vector<float> want;
  data::AugmentWorkspace ws;
  for (int rep = 0; rep < reps; ++rep)
    for (const Source& src : sources)
      for (const data::ViewOptions& o : options) {
        const math::AugmentParams p = data::sample_view(o, src.h, src.w, out_h, out_w, gen);
        params.push_back(p);
        descs.push_back({static_cast<int64_t>(packed.size()), src.h, src.w, src.c});
        const size_t at = want.size();
        want.resize(at + size_t(out_h) * out_w * 3);
        data::apply_view(data::ImageView{src.pixels.data(), src.h, src.w, src.c}, p, out_h, out_w, norm,
                         want.data() + at, ws);
        packed.insert(packed.end(), src.pixels.begin(), src.pixels.end());
      }
  const int views = static_cast<int>(params.size());
  const kernels::AugmentScratchPlan plan = kernels::plan_augment_scratch(params, descs, out_h, out_w);
  cuda::DeviceBuffer d_pixels = cuda::device_copy_of(packed), d_descs = cuda::device_copy_of(descs),
                     d_params = cuda::device_copy_of(params), d_offsets = cuda::device_copy_of(plan.offsets);
  cuda::DeviceBuffer d_out(sizeof(float) * want.size()), d_scratch(sizeof(float) * plan.total_floats);
  // All bits set: an output value the kernel does not write reads back as NaN and fails the check.
  BYOL_CUDA_CHECK(cudaMemsetAsync(d_out.get(), 0xFF, d_out.bytes(), cuda::compute_stream()));
  kernels::augment_views(d_pixels.as<uint8_t>(), d_descs.as<kernels::AugmentSource>(),
                         d_params.as<math::AugmentParams>(), d_offsets.as<int64_t>(), views, out_h, out_w,
                         norm.mean.data(), norm.std.data(), plan.max_blur_radius, d_out.as<float>(),
                         d_scratch.as<float>(), cuda::compute_stream());
  std::vector<float> got(want.size());
  BYOL_CUDA_CHECK(cudaMemcpyAsync(got.data(), d_out.get(), sizeof(float) * got.size(), cudaMemcpyDeviceToHost,
                                  cuda::compute_stream()));
  BYOL_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
  double sum_abs = 0, worst = 0;
  size_t far = 0, nonfinite = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) ++nonfinite;
    const double d = std::abs(double(got[i]) - want[i]);
    sum_abs += d;
    worst = std::max(worst, d);
    if (d > 1e-3) ++far;
  }
  const double mean_abs = sum_abs / want.size();
  std::printf(
      "augment kernel %dx%d, %d views (blur radius up to %d): mean |GPU - CPU| %.3g, max %.3g, %zu of %zu "
      "values > 1e-3\n",
      out_h, out_w, views, plan.max_blur_radius, mean_abs, worst, far, want.size());
  INFO(out_h << "x" << out_w << ": mean abs " << mean_abs << ", max " << worst << ", far " << far);
  CHECK(nonfinite == 0);
  CHECK(mean_abs < 1e-5);
  CHECK(far <= want.size() / 1000);
}

// View options that switch every step on in some view: the recipe's two views, and forced variants.
std::vector<data::ViewOptions> view_options() {
  data::ViewOptions all_on = data::ViewOptions::byol_view2();
  all_on.flip_p = all_on.jitter_p = all_on.grayscale_p = all_on.blur_p = all_on.solarize_p = 1.0;
  data::ViewOptions torchvision = data::ViewOptions::byol_view1();
  torchvision.jitter_p = 1.0;
  torchvision.jitter_style = data::JitterStyle::torchvision;
  return {data::ViewOptions::byol_view1(), data::ViewOptions::byol_view2(), all_on, torchvision};
}

}  // namespace

TEST_CASE("[cuda] augmentation kernel: every view equals data::apply_view's", "[cuda][augment]") {
  std::mt19937_64 gen(7);
  const std::vector<Source> sources = {make_source(37, 53, 3, gen), make_source(64, 64, 3, gen),
                                       make_source(20, 31, 1, gen), make_source(120, 90, 3, gen),
                                       make_source(16, 16, 3, gen)};
  for (const auto& [out_h, out_w] : {std::pair{32, 32}, std::pair{24, 40}, std::pair{96, 96}})
    compare_views(sources, view_options(), out_h, out_w, 3, gen);
}

TEST_CASE("[cuda] augmentation kernel at training size: 224 px views of ImageNet-sized sources",
          "[cuda][augment]") {
  // What an ImageNet run makes: 224 px outputs (the blur's 23 taps), sources of a few hundred pixels (crops
  // shrunk up to about 9x: up to 37 resize taps, scratch spans of hundreds of rows), RGB and gray.
  std::mt19937_64 gen(8);
  const std::vector<Source> sources = {make_source(375, 500, 3, gen), make_source(200, 300, 1, gen),
                                       make_source(640, 427, 3, gen)};
  compare_views(sources, view_options(), 224, 224, 1, gen);
}

TEST_CASE("[cuda] data.augment_on = gpu: raw batches augmented on the device equal the CPU loader's",
          "[cuda][augment]") {
  // The path byol-pretrain takes: the loader's raw batches through upload_and_augment (BatchUploader, then
  // the kernel), against the CPU loader's views of the same seed and epoch, with the kernel test's bounds.
  auto ds = std::make_shared<data::SyntheticDataset>(40, 4, 40, 11);
  const data::AugmentOptions aug = data::AugmentOptions::byol(32, data::Normalization::cifar10());
  data::Loader cpu(ds, aug, {.batch_size = 16, .workers = 2, .seed = 3});
  data::Loader raw(ds, aug, {.batch_size = 16, .workers = 2, .seed = 3, .raw = true});
  cpu.start_epoch(1);
  raw.start_epoch(1);
  BatchUploader up;
  int batches = 0;
  while (std::optional<data::Batch> a = cpu.next()) {
    std::optional<data::Batch> b = raw.next();
    REQUIRE(b);
    const std::vector<Tensor> views =
        upload_and_augment(up, b->pixels, b->sources, b->params, 32, 32, aug.normalization.mean,
                           aug.normalization.std, Device::cuda(), {b->labels});
    REQUIRE(views.size() == 3);  // the two views, then the labels uploaded with them
    CHECK(views[2].to_vector<int64_t>() == a->labels.to_vector<int64_t>());
    for (int v = 0; v < 2; ++v) {
      REQUIRE(views[v].shape() == a->views[v].shape());
      const std::vector<float> got = views[v].to_vector<float>(), want = a->views[v].to_vector<float>();
      double sum = 0;
      size_t far = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double d = std::abs(double(got[i]) - want[i]);
        sum += std::isfinite(got[i]) ? d : 1e30;
        far += d > 1e-3;
      }
      std::printf("augment_on gpu, batch %d view %d: mean |GPU - CPU| %.3g, %zu of %zu values > 1e-3\n",
                  batches, v, sum / got.size(), far, got.size());
      CHECK(sum / got.size() < 1e-5);
      CHECK(far <= got.size() / 1000);
    }
    ++batches;
  }
  CHECK(batches == 2);
}
#endif
