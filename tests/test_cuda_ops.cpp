// The CUDA backend against the CPU backend.
//
// Untagged cases (run everywhere, no GPU needed): the host-callable launch geometry and index helpers of
// engine/cuda/launch.h — every grid covers its range exactly once, the pooling-window inversion and the
// LARS segment lookup agree with brute force.
//
// [cuda] cases (skipped, saying so, without a GPU): every op forward and backward on fresh random inputs
// of several shapes — odd sizes, channel counts that are not multiples of 4 or 8 — against the CPU
// backend; the device memory pool is filled with NaN before each GPU run, so an output element a kernel
// fails to write shows up as NaN. Tolerances are relative errors over the whole tensor,
// ||gpu - cpu|| / ||cpu||, stated per op with TF32 off; one convolution case also runs with TF32 on.
// Then EMA and LARS over flat buffers, a whole BYOL step on the GPU against the same step on the CPU,
// and the PyTorch reference step (tests/fixtures/byol_step.safetensors) reproduced on the GPU.
// [cuda-kernels] marks the cases of the handwritten kernels, which scripts/gpu_check.sh also runs under
// compute-sanitizer memcheck and initcheck; [cuda-step] the whole step of the tiny network, which it runs
// under initcheck too (unwritten outputs anywhere in a step; the other cuDNN/cuBLAS cases are too slow).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "engine/cuda/launch.h"
#if BYOL_WITH_CUDA
#include "byol/checkpoint.h"
#include "byol/learner.h"
#include "byol/objective.h"
#include "engine/cuda/context.h"
#include "engine/cuda/lars.cuh"
#include "engine/cuda/optimizers.cuh"
#if BYOL_WITH_CUDA
#include "tests/cuda_test_helpers.h"
#endif
#include "engine/io/safetensors.h"
#include "engine/math/cross_entropy.h"
#include "engine/ops.h"
#include "engine/upload.h"
#include "tests/reference_fixture.h"
#include "tests/temp_dir.h"
#endif

using namespace byol;

// --- host-callable helpers (untagged) --------------------------------------------------------------------

TEST_CASE("launch geometry covers every element once", "[kernels]") {
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(255), int64_t(256), int64_t(257), int64_t(100000),
                    int64_t(1) << 31}) {
    const unsigned blocks = kernels::grid_1d(n);
    CHECK(blocks >= 1);
    CHECK(blocks <= kernels::kMaxBlocks);
    // grid-stride: the grid covers n when n fits in it, and otherwise strides over the rest
    if (n <= kernels::kMaxBlocks * kernels::kThreads) CHECK(int64_t(blocks) * kernels::kThreads >= n);
    const unsigned row_blocks = kernels::grid_rows(n);
    CHECK(row_blocks >= 1);
    CHECK(row_blocks <= kernels::kMaxBlocks);
  }
  CHECK(kernels::grid_1d(1024, 4) == 1);
  CHECK(kernels::grid_1d(1025, 4) == 2);
}

TEST_CASE("batch-norm reduction grid: chunks cover the rows exactly once", "[kernels]") {
  for (int64_t M : std::vector<int64_t>{1, 3, 8, 9, 100, 4096, 802816}) {
    for (int64_t C : std::vector<int64_t>{1, 3, 31, 32, 33, 64, 2048})
      for (int64_t V : {1, 4, 8}) {  // channels per thread (packs of 16 bytes: 4 floats, 8 bf16)
        const kernels::BnGrid g = kernels::bn_grid(M, C, V);
        INFO("M " << M << " C " << C << " channels per thread " << V);
        CHECK(g.channel_tiles * kernels::kBnTileC * V >= C);
        CHECK((g.channel_tiles - 1) * kernels::kBnTileC * V < C);
        CHECK(g.rows_per_chunk % kernels::kBnTileRows == 0);
        CHECK(g.row_chunks * g.rows_per_chunk >= M);
        CHECK((g.row_chunks - 1) * g.rows_per_chunk < M);
        CHECK(g.row_chunks <= 65535);  // grid.y limit
      }
  }
}

TEST_CASE("batch-norm elementwise grid: every (row, channel) exactly once, within the grid limits",
          "[kernels]") {
  for (int64_t M : std::vector<int64_t>{1, 3, 8, 9, 100, 4096, 802816, 6422528}) {
    for (int64_t C : std::vector<int64_t>{1, 3, 31, 32, 33, 64, 2048})
      for (int64_t V : {1, 4, 8}) {
        const kernels::BnRowsGrid g = kernels::bn_rows_grid(M, C, V);
        INFO("M " << M << " C " << C << " channels per thread " << V);
        CHECK(g.channel_tiles * kernels::kBnTileC * V >= C);
        CHECK((g.channel_tiles - 1) * kernels::kBnTileC * V < C);
        CHECK(g.row_blocks >= 1);
        CHECK(g.row_blocks <= 65535);                                           // grid.y limit
        CHECK(g.row_blocks * kernels::kBnTileRows < M + kernels::kBnTileRows);  // no block without a row
        CHECK(g.channel_tiles * g.row_blocks <= std::max<int64_t>(kernels::kMaxBlocks, g.channel_tiles));
        if (M <= 4096) {  // the kernels' row loop, walked: each row once
          std::vector<int> seen(static_cast<size_t>(M), 0);
          const int64_t step = g.row_blocks * kernels::kBnTileRows;
          for (int64_t by = 0; by < g.row_blocks; ++by)
            for (int64_t ty = 0; ty < kernels::kBnTileRows; ++ty)
              for (int64_t r = by * kernels::kBnTileRows + ty; r < M; r += step) ++seen[r];
          CHECK(std::count(seen.begin(), seen.end(), 1) == M);
        }
      }
  }
}

TEST_CASE("pooling windows covering an input row agree with brute force", "[kernels]") {
  for (int kernel : {1, 2, 3, 5})
    for (int stride : {1, 2, 3})
      for (int pad = 0; 2 * pad <= kernel; ++pad)
        for (int64_t H : std::vector<int64_t>{1, 2, 5, 8, 11}) {
          if (H + 2 * pad < kernel) continue;
          const int64_t P = (H + 2 * pad - kernel) / stride + 1;
          for (int64_t h = 0; h < H; ++h) {
            std::set<int64_t> expected;
            for (int64_t p = 0; p < P; ++p)
              if (p * stride - pad <= h && h < p * stride - pad + kernel) expected.insert(p);
            const kernels::IndexRange r = kernels::pool_windows_covering<int64_t>(h, kernel, stride, pad, P);
            std::set<int64_t> got;
            for (int64_t p = r.first; p < r.last; ++p) got.insert(p);
            INFO("kernel " << kernel << " stride " << stride << " pad " << pad << " H " << H << " h " << h);
            CHECK(got == expected);
            // the 32-bit instantiation the kernels take where the indices fit
            const kernels::IndexRangeOf<int32_t> r32 = kernels::pool_windows_covering<int32_t>(
                static_cast<int32_t>(h), kernel, stride, pad, static_cast<int32_t>(P));
            CHECK(r32.first == r.first);
            CHECK(r32.last == r.last);
          }
        }
}

TEST_CASE("LARS segment lookup finds each element's tensor and skips gaps", "[kernels]") {
  const std::vector<int64_t> begins{0, 16, 20, 64}, ends{9, 20, 33, 65};
  for (int64_t i = 0; i < 80; ++i) {
    int expected = -1;
    for (int s = 0; s < 4; ++s)
      if (begins[s] <= i && i < ends[s]) expected = s;
    CHECK(kernels::segment_of(begins.data(), ends.data(), 4, i) == expected);
  }
  CHECK(kernels::segment_of(begins.data(), ends.data(), 0, 3) == -1);
}

TEST_CASE("LARS chunks cover every element of every segment exactly once, and no gap", "[kernels]") {
  for (const int64_t C : {kernels::kLarsChunk, int64_t(16384), int64_t(64)}) {  // lars_lab times 16384 too
    INFO("chunk " << C);
    // empty, one element, exactly one chunk, one chunk and one element, several chunks with a tail
    const std::vector<int64_t> begins{0, 16, 32, 32 + C + 16, 64 + 3 * C},
        ends{0, 17, 32 + C, 64 + 2 * C + 1, 64 + 6 * C + 7};
    const std::vector<int64_t> first = kernels::lars_chunk_first(begins, ends, C);
    REQUIRE(first.size() == begins.size() + 1);
    CHECK(first == std::vector<int64_t>{0, 0, 1, 2, 4, 8});
    std::vector<int> covered(static_cast<size_t>(ends.back()), 0);
    for (size_t s = 0; s < begins.size(); ++s)
      for (int64_t k = 0; k < first[s + 1] - first[s]; ++k) {
        const kernels::IndexRange r = kernels::lars_chunk_range(begins[s], ends[s], k, C);
        CHECK(r.first < r.last);
        CHECK(r.last - r.first <= C);
        for (int64_t i = r.first; i < r.last; ++i) ++covered[static_cast<size_t>(i)];
      }
    for (int64_t i = 0; i < ends.back(); ++i) {
      const int expected = kernels::segment_of(begins.data(), ends.data(), 5, i) >= 0 ? 1 : 0;
      if (covered[static_cast<size_t>(i)] != expected)
        FAIL("element " << i << " covered " << covered[i] << " times");
    }
  }
}

#if BYOL_WITH_CUDA

namespace {

using cuda_test::kGpu;
using cuda_test::rel_error;
using cuda_test::Tf32Guard;

void poison_device_pool() {
  cuda_test::poison_device_pool((int64_t(1) << 22));  // 16 MiB, freed at once
}

// Runs fn on CPU copies and on GPU copies of `inputs` (those flagged in needs_grad become leaves that
// require a gradient), back-propagates the same random seed gradient through both, and checks the
// output and every input gradient within `tol`.
//
// zero_gradient: the exact gradient is zero (rows of one element normalise to +-1 whatever their value),
// so both backends return rounding noise and a relative error between them means nothing (the first GPU
// run measured 1e9 for byol_loss [1, 1]). Then each backend's gradient is checked to be zero within
// tol x max|dy| / min|x|, the size of one term of the gradient.
void check_against_cpu(const std::string& what, const std::vector<Tensor>& inputs,
                       const std::vector<bool>& needs_grad,
                       const std::function<Tensor(const std::vector<Tensor>&)>& fn, double tol,
                       uint64_t seed = 7, bool zero_gradient = false) {
  INFO(what);
  std::vector<Tensor> cpu_in, gpu_in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor c = inputs[i].clone(), g = inputs[i].to(kGpu);
    if (needs_grad[i]) {
      c.set_requires_grad(true);
      g.set_requires_grad(true);
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor y_cpu = fn(cpu_in);
  poison_device_pool();
  Tensor y_gpu = fn(gpu_in);
  REQUIRE(y_gpu.device() == kGpu);
  const double ey = rel_error(y_gpu, y_cpu);
  INFO("output relative error " << ey);
  CHECK(ey < tol);
  bool any_grad = false;
  for (bool b : needs_grad) any_grad = any_grad || b;
  if (!any_grad) return;
  std::mt19937_64 gen(seed);
  Tensor dy = Tensor::randn(y_cpu.shape(), gen);
  y_cpu.backward(dy);
  poison_device_pool();
  y_gpu.backward(dy.to(kGpu));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!needs_grad[i]) continue;
    if (zero_gradient) {
      double dy_max = 0, x_min = std::numeric_limits<double>::infinity(), g_cpu = 0, g_gpu = 0;
      for (float v : dy.to_vector<float>()) dy_max = std::max(dy_max, std::abs(double(v)));
      for (float v : inputs[i].to_vector<float>()) x_min = std::min(x_min, std::abs(double(v)));
      for (float v : cpu_in[i].grad().to_vector<float>()) g_cpu = std::max(g_cpu, std::abs(double(v)));
      for (float v : gpu_in[i].grad().to_vector<float>()) g_gpu = std::max(g_gpu, std::abs(double(v)));
      const double bound = tol * dy_max / std::max(x_min, 1e-30);
      INFO("gradient of input " << i << " (exactly zero): max |g| cpu " << g_cpu << ", gpu " << g_gpu
                                << ", bound " << bound);
      CHECK(g_cpu <= bound);
      CHECK(g_gpu <= bound);
      continue;
    }
    const double eg = rel_error(gpu_in[i].grad(), cpu_in[i].grad());
    INFO("gradient of input " << i << ": relative error " << eg);
    CHECK(eg < tol);
  }
}

Tensor randn(const Shape& s, std::mt19937_64& gen, double mean = 0, double std = 1) {
  return Tensor::randn(s, gen, DType::f32, mean, std);
}

}  // namespace

TEST_CASE("CUDA fills write the value on the device (float32, float64, views, other dtypes)", "[cuda]") {
  // float32 / float64 go through the fill kernel against the device-resident 1.0; others through the host.
  poison_device_pool();
  for (double v : {1.0, -2.5, 0.0, 3.0e38, 1e-45}) {
    INFO("value " << v);
    const Tensor f = Tensor::full({1000003}, v, DType::f32, kGpu);
    const std::vector<float> got = f.to_vector<float>();
    const float want = static_cast<float>(v);
    CHECK(std::all_of(got.begin(), got.end(), [&](float x) { return x == want; }));
    const Tensor d = Tensor::full({7, 3}, v, DType::f64, kGpu);
    const std::vector<double> got_d = d.to_vector<double>();
    CHECK(std::all_of(got_d.begin(), got_d.end(), [&](double x) { return x == v; }));
  }
  Tensor t = Tensor::zeros({4, 6}, DType::f32, kGpu);
  t.slice_rows(1, 3).fill_(2.0);  // a contiguous window: the kernel path, only rows 1 and 2
  const std::vector<float> rows = t.to_vector<float>();
  for (int i = 0; i < 24; ++i) CHECK(rows[i] == ((i >= 6 && i < 18) ? 2.0f : 0.0f));
  const Tensor ints = Tensor::full({5}, 7.0, DType::i32, kGpu);
  CHECK(ints.to_vector<int32_t>() == std::vector<int32_t>(5, 7));
  // The backward seed is such a fill: a scalar loss back-propagates gradient 1.
  Tensor x = Tensor::full({3}, 2.0, DType::f32, kGpu);
  x.set_requires_grad(true);
  ops::sum(x).backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>(3, 1.0f));
}

TEST_CASE("CUDA conv2d matches the CPU (cuDNN, NHWC / KRSC)", "[cuda]") {
  Tf32Guard tf32(false);
  std::mt19937_64 gen(1);
  struct Case {
    int64_t N, H, W, C, K, R;
    int stride, pad;
  };
  for (const Case& c :
       {Case{2, 7, 9, 3, 5, 3, 1, 1}, Case{3, 8, 8, 6, 12, 1, 2, 0}, Case{2, 11, 11, 7, 9, 3, 2, 1},
        Case{1, 5, 5, 1, 1, 1, 1, 0}, Case{2, 9, 9, 16, 32, 3, 1, 1}, Case{1, 15, 13, 3, 10, 7, 2, 3}}) {
    // tolerance 1e-4: float32 on both sides, different summation orders
    check_against_cpu(
        cat("conv2d N", c.N, " H", c.H, " W", c.W, " C", c.C, " K", c.K, " R", c.R, " s", c.stride, " p",
            c.pad),
        {randn({c.N, c.H, c.W, c.C}, gen), randn({c.K, c.R, c.R, c.C}, gen, 0, 0.3)}, {true, true},
        [&](const std::vector<Tensor>& in) {
          return ops::conv2d(in[0], in[1], {c.stride, c.pad});
        },
        1e-4);
  }
  // A filter taller than wide on an image wider than tall: an R / S or H / W swap anywhere (geometry,
  // filter descriptor, plan key) gives other shapes or values.
  check_against_cpu(
      "conv2d R5 S3", {randn({2, 9, 12, 4}, gen), randn({6, 5, 3, 4}, gen, 0, 0.3)}, {true, true},
      [](const std::vector<Tensor>& in) {
        return ops::conv2d(in[0], in[1], {1, 1});
      },
      1e-4);
  Tf32Guard tf32_on(true);  // TF32 keeps 10 mantissa bits: relative error ~1e-3
  check_against_cpu(
      "conv2d with TF32", {randn({2, 9, 9, 16}, gen), randn({24, 3, 3, 16}, gen, 0, 0.3)}, {true, true},
      [](const std::vector<Tensor>& in) {
        return ops::conv2d(in[0], in[1], {1, 1});
      },
      1e-2);
  // Whether TF32 reaches the tensor cores at a ResNet shape (cuDNN math type CUDNN_DEFAULT_MATH since
  // 2026-12-05): the same convolution with TF32 off and on. Equal bits would mean cuDNN chose a float32
  // FMA kernel although TF32 was allowed. Printed for the GPU run's log; which kernel cuDNN picks is its
  // choice, so it is not asserted.
  const Tensor x = randn({16, 32, 32, 64}, gen).to(kGpu), w = randn({64, 3, 3, 64}, gen, 0, 0.05).to(kGpu);
  Tensor y_fp32;
  {
    Tf32Guard off(false);
    y_fp32 = ops::conv2d(x, w, {1, 1});
  }
  const Tensor y_tf32 = ops::conv2d(x, w, {1, 1});
  std::printf(
      "[cuda readiness] conv 64->64 3x3 at 32x32, batch 16: TF32 on vs off, relative difference %.2e "
      "(0: no TF32 kernel was chosen; about 1e-4 to 1e-3: TF32 tensor cores)\n",
      rel_error(y_tf32, y_fp32));
}

TEST_CASE("CUDA products over an empty inner dimension are zeros, plus the bias, as on the CPU", "[cuda]") {
  CHECK(ops::matmul(Tensor::zeros({3, 0}, DType::f32, kGpu), Tensor::zeros({0, 4}, DType::f32, kGpu))
            .to_vector<float>() == std::vector<float>(12, 0.0f));
  const Tensor y =
      ops::linear(Tensor::zeros({5, 0}, DType::f32, kGpu), Tensor::zeros({2, 0}, DType::f32, kGpu),
                  Tensor::full({2}, 1.5, DType::f32, kGpu));
  CHECK(y.to_vector<float>() == std::vector<float>(10, 1.5f));
}

TEST_CASE("CUDA pooling matches the CPU", "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(2);
  // C = 8 and 16: the packed max-pool kernels (engine/cuda/pack.cuh); the others the scalar ones.
  for (Shape s : {Shape{2, 7, 9, 3}, Shape{1, 8, 8, 5}, Shape{3, 5, 6, 17}, Shape{1, 1, 1, 2},
                  Shape{2, 9, 7, 8}, Shape{1, 6, 5, 16}}) {
    const Tensor x = randn(s, gen);
    // exact: max pool selects and sums the same values in the same order
    check_against_cpu(
        "max_pool2d " + shape_str(s), {x}, {true},
        [](const std::vector<Tensor>& in) { return ops::max_pool2d(in[0], 3, 2, 1); }, 1e-7);
    check_against_cpu(
        "max_pool2d k2 s2 p0 " + shape_str(s), {x}, {true},
        [&](const std::vector<Tensor>& in) {
          return s[1] >= 2 && s[2] >= 2 ? ops::max_pool2d(in[0], 2, 2, 0) : ops::max_pool2d(in[0], 1, 1, 0);
        },
        1e-7);
    check_against_cpu(
        "global_avg_pool " + shape_str(s), {x}, {true},
        [](const std::vector<Tensor>& in) { return ops::global_avg_pool(in[0]); }, 1e-6);
    // After a ReLU, as in the ResNet stem: many windows are all zeros, and ties decide which input gets the
    // gradient; both backends must choose the same one.
    check_against_cpu(
        "max_pool2d after ReLU (ties) " + shape_str(s), {ops::relu(ops::add(x, Tensor::full(s, -0.8)))},
        {true}, [](const std::vector<Tensor>& in) { return ops::max_pool2d(in[0], 3, 2, 1); }, 1e-7);
  }
}

TEST_CASE("CUDA batch norm matches the CPU: training, evaluation, running statistics, sync hook",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(3);
  // C = 4, 16, 64 and 264 take the packed kernels (4 floats per thread; 264: three tiles of 128 channels,
  // the last partly filled), the others a channel per thread; [65600, 8]: several rows per thread in the
  // reductions and two turns of the elementwise passes' row loop
  for (Shape s : {Shape{4, 5, 3, 7}, Shape{2, 9, 9, 33}, Shape{13, 6}, Shape{64, 130}, Shape{3, 1, 1, 4},
                  Shape{4, 5, 3, 16}, Shape{40, 64}, Shape{40, 264}, Shape{65600, 8}}) {
    const int64_t C = s.back();
    // a channel mean far from 0 exercises the fp32-partials / double-combine split
    const Tensor x = randn(s, gen, 3.0, 2.0), gamma = randn({C}, gen, 1.0, 0.2), beta = randn({C}, gen);
    const Tensor rm = randn({C}, gen), rv = Tensor::uniform({C}, gen, 0.5, 2.0);
    for (bool training : {true, false}) {
      Tensor rm_cpu = rm.clone(), rv_cpu = rv.clone(), rm_gpu = rm.to(kGpu), rv_gpu = rv.to(kGpu);
      check_against_cpu(
          cat("batch_norm ", shape_str(s), training ? " training" : " eval"), {x, gamma, beta},
          {true, true, true},
          [&](const std::vector<Tensor>& in) {
            const bool gpu = in[0].device().is_cuda();
            ops::BatchNormOptions opt;
            opt.training = training;
            return ops::batch_norm(in[0], in[1], in[2], gpu ? rm_gpu : rm_cpu, gpu ? rv_gpu : rv_cpu, opt);
          },
          2e-5);  // fp32 sums on the GPU vs double on the CPU
      CHECK(rel_error(rm_gpu, rm_cpu) < 1e-5);
      CHECK(rel_error(rv_gpu, rv_cpu) < 1e-5);
    }
    // The hook sees f64 sums on the input's device; doubling every sum (two identical ranks) must not
    // change the result, on either backend.
    int gpu_calls = 0;
    ops::BatchNormOptions sync;
    sync.all_reduce = [&](Tensor& sums) {
      REQUIRE(sums.dtype() == DType::f64);
      if (sums.device().is_cuda()) ++gpu_calls;
      std::vector<double> v = sums.to_vector<double>();
      for (double& d : v) d *= 2;
      Tensor doubled = Tensor::from_vector(v, sums.shape());
      sums.copy_(sums.device().is_cuda() ? doubled.to(kGpu) : doubled);
    };
    check_against_cpu(
        "batch_norm synced " + shape_str(s), {x, gamma, beta}, {true, true, true},
        [&](const std::vector<Tensor>& in) {
          return ops::batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), sync);
        },
        2e-5);
    CHECK(gpu_calls == 2);  // forward and backward
  }
  // Groups (BYOL's two views in one pass): statistics per group, running statistics group after group,
  // one hook call per pass with every group's sums, and a group's mean far from the other's.
  for (Shape s : {Shape{6, 3, 5, 9}, Shape{8, 33}}) {
    const int64_t C = s.back();
    Shape half = s;
    half[0] /= 2;
    const Tensor x = ops::concat({randn(half, gen, 3.0, 2.0), randn(half, gen, -1.0, 0.5)});
    const Tensor gamma = randn({C}, gen, 1.0, 0.2), beta = randn({C}, gen);
    Tensor rm_cpu = randn({C}, gen), rv_cpu = Tensor::uniform({C}, gen, 0.5, 2.0);
    Tensor rm_gpu = rm_cpu.to(kGpu), rv_gpu = rv_cpu.to(kGpu);
    int calls = 0;
    ops::BatchNormOptions grouped;
    grouped.groups = 2;
    grouped.all_reduce = [&](Tensor& sums) {
      if (sums.device().is_cuda()) {
        ++calls;
        CHECK((sums.numel() == 2 * (2 * C + 1) || sums.numel() == 2 * 2 * C));
      }
    };
    check_against_cpu(
        "batch_norm in 2 groups " + shape_str(s), {x, gamma, beta}, {true, true, true},
        [&](const std::vector<Tensor>& in) {
          const bool gpu = in[0].device().is_cuda();
          return ops::batch_norm(in[0], in[1], in[2], gpu ? rm_gpu : rm_cpu, gpu ? rv_gpu : rv_cpu, grouped);
        },
        2e-5);
    CHECK(rel_error(rm_gpu, rm_cpu) < 1e-5);
    CHECK(rel_error(rv_gpu, rv_cpu) < 1e-5);
    CHECK(calls == 2);
  }
}

TEST_CASE("CUDA batch_norm_relu (the fused epilogue) matches the CPU, with and without the residual",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(5);
  for (Shape s : {Shape{4, 5, 3, 7}, Shape{2, 9, 9, 33}, Shape{13, 6}, Shape{2, 7, 5, 32}, Shape{40, 264}}) {
    const int64_t C = s.back();
    const Tensor x = randn(s, gen, 1.0, 2.0), r = randn(s, gen), gamma = randn({C}, gen, 1.0, 0.2),
                 beta = randn({C}, gen);
    const Tensor rm = randn({C}, gen), rv = Tensor::uniform({C}, gen, 0.5, 2.0);
    for (bool training : {true, false}) {
      for (bool with_residual : {true, false}) {
        Tensor rm_cpu = rm.clone(), rv_cpu = rv.clone(), rm_gpu = rm.to(kGpu), rv_gpu = rv.to(kGpu);
        ops::BatchNormOptions opt;
        opt.training = training;
        opt.groups = s[0] % 2 == 0 ? 2 : 1;
        check_against_cpu(
            cat("batch_norm_relu ", shape_str(s), training ? " training" : " eval",
                with_residual ? " + residual" : ""),
            {x, gamma, beta, r}, {true, true, true, with_residual},
            [&](const std::vector<Tensor>& in) {
              const bool gpu = in[0].device().is_cuda();
              return ops::batch_norm_relu(in[0], in[1], in[2], gpu ? rm_gpu : rm_cpu, gpu ? rv_gpu : rv_cpu,
                                          opt, with_residual ? in[3] : Tensor());
            },
            2e-5);
        CHECK(rel_error(rm_gpu, rm_cpu) < 1e-5);
        CHECK(rel_error(rv_gpu, rv_cpu) < 1e-5);
      }
    }
  }
}

TEST_CASE("CUDA row ops match the CPU: l2_normalize, byol_loss, softmax_cross_entropy",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(4);
  for (Shape s : {Shape{1, 1}, Shape{5, 3}, Shape{7, 33}, Shape{64, 256}, Shape{300, 17}}) {
    const bool one_column = s[1] == 1;  // each row normalises to +-1: the gradient is exactly zero
    check_against_cpu(
        "l2_normalize " + shape_str(s), {randn(s, gen)}, {true},
        [](const std::vector<Tensor>& in) { return ops::l2_normalize(in[0]); }, 1e-5, 7, one_column);
    check_against_cpu(
        "byol_loss " + shape_str(s), {randn(s, gen), randn(s, gen), randn(s, gen), randn(s, gen)},
        {true, true, true, true},
        [](const std::vector<Tensor>& in) { return ops::byol_loss(in[0], in[1], in[2], in[3]); }, 1e-5, 7,
        one_column);
    // rows of zeros hit the clamp of the normalisation
    Tensor p = randn(s, gen);
    p.slice_rows(0, 1).zero_();
    check_against_cpu(
        "byol_loss zero row " + shape_str(s), {p, randn(s, gen), randn(s, gen), p.clone()},
        {true, true, true, true},
        [](const std::vector<Tensor>& in) { return ops::byol_loss(in[0], in[1], in[2], in[3]); }, 1e-5);
    std::vector<int64_t> labels(s[0]);
    std::uniform_int_distribution<int64_t> pick(0, s[1] - 1);
    for (auto& l : labels) l = pick(gen);
    check_against_cpu(
        "softmax_cross_entropy " + shape_str(s), {randn(s, gen, 0, 3), Tensor::from_vector(labels, {s[0]})},
        {true, false}, [](const std::vector<Tensor>& in) { return ops::softmax_cross_entropy(in[0], in[1]); },
        1e-5);
  }
  // On a GPU the labels are not read back: an out-of-range label makes the loss NaN (no read outside
  // the row), and its row's gradient NaN.
  Tensor bad = Tensor::from_vector(std::vector<int32_t>{0, 5}, {2}).to(kGpu);
  Tensor logits = Tensor::zeros({2, 5}, DType::f32, kGpu).set_requires_grad(true);
  Tensor loss = ops::softmax_cross_entropy(logits, bad);
  CHECK(std::isnan(loss.item()));
  loss.backward();
  const std::vector<float> g = logits.grad().to_vector<float>();
  for (int k = 0; k < 5; ++k) CHECK(std::isfinite(g[k]));
  for (int k = 5; k < 10; ++k) CHECK(std::isnan(g[k]));
}

TEST_CASE("CUDA count_top1_correct matches the CPU, ties and out-of-range labels included",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(12);
  for (Shape s : {Shape{1, 1}, Shape{7, 3}, Shape{300, 10}, Shape{1000, 1000}, Shape{5, 33}}) {
    // logits rounded to a coarse grid so that rows have tied maxima
    std::vector<float> l = randn(s, gen).to_vector<float>();
    for (float& v : l) v = std::round(v * 2) / 2;
    const Tensor logits = Tensor::from_vector(l, s);
    std::vector<int64_t> labels(s[0]);
    std::uniform_int_distribution<int64_t> pick(-1, s[1]);  // -1 and K: never correct
    for (auto& v : labels) v = pick(gen);
    const Tensor lab64 = Tensor::from_vector(labels, {s[0]});
    const Tensor lab32 = Tensor::from_vector(std::vector<int32_t>(labels.begin(), labels.end()), {s[0]});
    const double cpu = ops::count_top1_correct(logits, lab64).item();
    INFO(shape_str(s) << ": cpu count " << cpu);
    poison_device_pool();
    CHECK(ops::count_top1_correct(logits.to(kGpu), lab64.to(kGpu)).item() == cpu);
    CHECK(ops::count_top1_correct(logits.to(kGpu), lab32.to(kGpu)).item() == cpu);
    CHECK(ops::count_top1_correct(logits.to(kGpu), lab64.to(kGpu)).device() == kGpu);
  }
}

TEST_CASE("CUDA count_top1_correct finds every row's first maximum: NaN, infinities, signed zeros",
          "[cuda][cuda-kernels]") {
  // Each row labelled with the CPU's argmax (math::argmax_first), so a row the GPU gets wrong lowers the
  // count below N. Rows of special values first, then random rows on a coarse grid (ties).
  std::mt19937_64 gen(33);
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  for (const int64_t K : {int64_t(1), int64_t(2), int64_t(33), int64_t(1000)}) {
    std::vector<std::vector<float>> rows;
    const auto row_of = [&](float fill) { return std::vector<float>(static_cast<size_t>(K), fill); };
    rows.push_back(row_of(-inf));  // every value -inf: index 0
    rows.push_back(row_of(nan));   // every value NaN: index 0
    rows.push_back(row_of(0.0f));
    rows.back()[0] = -0.0f;  // -0 first, +0 later: equal, the first wins
    rows.push_back(row_of(1.0f));
    rows.back()[0] = nan;  // NaN first: never replaced
    rows.push_back(row_of(-1.0f));
    rows.back()[static_cast<size_t>(K - 1)] = inf;  // the maximum last
    rows.push_back(row_of(-inf));
    rows.back()[static_cast<size_t>(K / 2)] = nan;  // NaN inside a row of -inf: skipped
    for (int r = 0; r < 300; ++r) {
      std::vector<float> v = randn({K}, gen).to_vector<float>();
      for (float& x : v) x = std::round(x * 2) / 2;
      if (r % 3 == 0) v[static_cast<size_t>(r) % v.size()] = nan;
      rows.push_back(v);
    }
    const int64_t N = static_cast<int64_t>(rows.size());
    std::vector<float> flat;
    std::vector<int64_t> labels;
    for (const auto& v : rows) {
      flat.insert(flat.end(), v.begin(), v.end());
      labels.push_back(math::argmax_first(v.data(), K));
    }
    const Tensor logits = Tensor::from_vector(flat, {N, K}), lab = Tensor::from_vector(labels, {N});
    INFO("K = " << K);
    REQUIRE(ops::count_top1_correct(logits, lab).item() == static_cast<double>(N));
    poison_device_pool();
    CHECK(ops::count_top1_correct(logits.to(kGpu), lab.to(kGpu)).item() == static_cast<double>(N));
  }
}

TEST_CASE("CUDA dense ops match the CPU: linear (cuBLASLt bias epilogue), matmul", "[cuda]") {
  Tf32Guard tf32(false);
  std::mt19937_64 gen(5);
  struct Case {
    int64_t N, in, out;
  };
  for (const Case& c :
       {Case{1, 1, 1}, Case{5, 3, 7}, Case{17, 33, 9}, Case{64, 256, 130}, Case{3, 1000, 5}}) {
    for (bool bias : {true, false}) {
      check_against_cpu(
          cat("linear ", c.N, "x", c.in, "->", c.out, bias ? " bias" : ""),
          {randn({c.N, c.in}, gen), randn({c.out, c.in}, gen, 0, 0.1), randn({c.out}, gen)},
          {true, true, bias},
          [bias](const std::vector<Tensor>& in) {
            return ops::linear(in[0], in[1], bias ? in[2] : Tensor());
          },
          1e-5);
    }
    check_against_cpu(
        cat("matmul ", c.N, "x", c.in, "x", c.out), {randn({c.N, c.in}, gen), randn({c.in, c.out}, gen)},
        {true, true}, [](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); }, 1e-5);
  }
}

TEST_CASE("CUDA elementwise ops, reductions and shape ops match the CPU", "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(6);
  for (Shape s : {Shape{1}, Shape{7}, Shape{3, 5, 7}, Shape{1000, 33}, Shape{2, 3, 5, 9}}) {
    // relu: values kept away from 0, where CPU and GPU agree on the kink anyway
    Tensor x = randn(s, gen), y = randn(s, gen);
    check_against_cpu(
        "relu " + shape_str(s), {x}, {true}, [](const std::vector<Tensor>& in) { return ops::relu(in[0]); },
        1e-7);
    check_against_cpu(
        "add " + shape_str(s), {x, y}, {true, true},
        [](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); }, 1e-7);
    check_against_cpu(
        "scale " + shape_str(s), {x}, {true},
        [](const std::vector<Tensor>& in) { return ops::scale(in[0], -1.7); }, 1e-7);
    check_against_cpu(
        "sum " + shape_str(s), {x}, {true}, [](const std::vector<Tensor>& in) { return ops::sum(in[0]); },
        1e-6);
    check_against_cpu(
        "mean " + shape_str(s), {x}, {true}, [](const std::vector<Tensor>& in) { return ops::mean(in[0]); },
        1e-6);
    if (s[0] >= 2) {
      check_against_cpu(
          "concat/slice " + shape_str(s), {x, y}, {true, true},
          [](const std::vector<Tensor>& in) {
            Tensor c = ops::concat({in[0], in[1]});
            return ops::relu(ops::slice(c, 1, c.size(0) - 1).contiguous());
          },
          1e-7);
    }
    Tensor acc_cpu = x.clone(), acc_gpu = x.to(kGpu);
    ops::add_(acc_cpu, y);
    ops::add_(acc_gpu, y.to(kGpu));
    CHECK(rel_error(acc_gpu, acc_cpu) < 1e-7);
  }
}

TEST_CASE("CUDA casts match the CPU (f32, f64, bf16)", "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(8);
  const Tensor x = randn({3, 77}, gen, 0, 100);
  for (DType a : {DType::f32, DType::f64, DType::bf16})
    for (DType b : {DType::f32, DType::f64, DType::bf16}) {
      const Tensor cpu = x.to(a).to(b).to(DType::f32);
      const Tensor gpu = x.to(a).to(kGpu).to(b).to(DType::f32);
      INFO(dtype_name(a) << " -> " << dtype_name(b));
      CHECK(gpu.to_vector<float>() == cpu.to_vector<float>());  // bitwise: one rounding rule
    }
}

TEST_CASE("CUDA EMA of the target matches the CPU, vector and scalar paths", "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(9);
  for (int64_t n : std::vector<int64_t>{1, 4, 7, 1024, 100003}) {
    for (int64_t offset : std::vector<int64_t>{0, 1}) {  // offset 1: unaligned start, scalar path
      const Tensor t = randn({n + offset}, gen), o = randn({n + 5 + offset}, gen);
      Tensor t_cpu = t.clone(), t_gpu = t.to(kGpu), o_gpu = o.to(kGpu);
      ema_update_target(t_cpu.slice_rows(offset, n + offset), o.slice_rows(offset, n + 5 + offset), 0.996);
      ema_update_target(t_gpu.slice_rows(offset, n + offset), o_gpu.slice_rows(offset, n + 5 + offset),
                        0.996);
      INFO("n " << n << " offset " << offset);
      CHECK(t_gpu.to_vector<float>() == t_cpu.to_vector<float>());  // one formula, float on both sides
    }
  }
}

namespace {

NetworkConfig tiny_network() {
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = models::Stem::cifar;
  net.encoder.base_channels = 3;  // 3, 6, 12, 24 channels: none a multiple of 8
  net.encoder.blocks = {1, 1, 1, 1};
  net.projector_hidden = 12;
  net.projection_dim = 5;
  net.predictor_hidden = 12;
  return net;
}

TrainConfig tiny_train() {
  TrainConfig t;
  t.batch_size = 6;
  t.total_steps = 10;
  t.warmup_steps = 0;
  t.base_lr = 2.0;
  t.weight_decay = 1e-3;
  t.tau_base = 0.9;
  t.seed = 3;
  return t;
}

}  // namespace

TEST_CASE("CUDA LARS matches the CPU over a registry's flat buffers", "[cuda][cuda-kernels]") {
  Learner cpu(tiny_network(), tiny_train()), gpu(tiny_network(), tiny_train());
  std::mt19937_64 gen(10);
  const Tensor g = randn(cpu.nets.online.grads().shape(), gen, 0, 0.01);
  cpu.nets.online.grads().copy_(g);
  gpu.nets.online.grads().copy_(g);
  gpu.nets.online.to(kGpu);
  CHECK_THROWS_WITH(gpu.lars.step(0.3), Catch::Matchers::Contains("Lars: its momentum is on cpu") &&
                                            Catch::Matchers::Contains("cuda:0"));
  gpu.lars.to(kGpu);
  for (int step = 0; step < 2; ++step) {  // the second step uses the momentum of the first
    cpu.lars.step(0.3);
    gpu.lars.step(0.3);
  }
  CHECK(rel_error(gpu.nets.online.params(), cpu.nets.online.params()) < 1e-6);
  CHECK(rel_error(gpu.lars.momentum(), cpu.lars.momentum()) < 1e-5);
  const std::vector<double> tc = cpu.lars.last_trust_ratios();
  const std::vector<double> tg = gpu.lars.last_trust_ratios();  // copied from the device here
  REQUIRE(tc.size() == tg.size());
  for (size_t i = 0; i < tc.size(); ++i) CHECK(tg[i] == Approx(tc[i]).epsilon(1e-6));
}

namespace {

// Sets a lab switch of the packed kernels for a scope (and clears it on the way out, also when a check
// throws).
struct UnpackedGuard {
  void (*set)(bool);
  UnpackedGuard(void (*s)(bool), bool on) : set(s) { set(on); }
  ~UnpackedGuard() { set(false); }
};

}  // namespace

TEST_CASE("CUDA LARS matches the CPU in packs and one float at a time, at any alignment",
          "[cuda][cuda-kernels]") {
  // Tensors of many chunks with a tail (the unrolled and the remainder loops of a chunk), of one chunk, of
  // fewer elements than a pack, one starting off a pack boundary (that chunk goes one float at a time), and
  // gaps; the whole buffer also one float off a 16-byte boundary (every chunk one float at a time).
  const int64_t C = kernels::kLarsChunk;
  const std::vector<ops::LarsLayout::Segment> segments{{0, 3, true, true},
                                                       {16, 16 + 5 * C + 7, false, false},
                                                       {16 + 6 * C, 16 + 7 * C, true, false},
                                                       {16 + 7 * C + 5, 16 + 7 * C + 300, false, false},
                                                       {16 + 8 * C, 16 + 12 * C, false, false}};
  const int64_t n = 16 + 12 * C + 9;
  const ops::LarsLayout layout(segments, n);
  std::mt19937_64 gen(31);
  // one float more than offset + n: the element past the window must stay as it was
  const Tensor w0 = randn({n + 2}, gen), g0 = randn({n + 2}, gen, 0, 1e-3), m0 = randn({n + 2}, gen, 0, 1e-3);
  const std::vector<float> w0_host = w0.to_vector<float>();
  const ops::LarsHyper hyper{0.3, 1e-3, 0.9, 1e-3};
  for (const int64_t offset : {int64_t(0), int64_t(1)}) {
    std::vector<float> w_first_step[2], m_first_step[2];  // the GPU's after one step, packs / one at a time
    for (const bool unpacked : {false, true}) {
      INFO("offset " << offset << (unpacked ? ", one float at a time" : ", packs"));
      const auto window = [&](const Tensor& t) { return t.slice_rows(offset, offset + n); };
      const Tensor w_gpu = w0.to(kGpu);
      const Tensor wc = window(w0.clone()), gc = window(g0), mc = window(m0.clone());
      const Tensor wg = window(w_gpu), gg = window(g0.to(kGpu)), mg = window(m0.to(kGpu));
      const Tensor tc = Tensor::zeros({5}, DType::f64), tg = Tensor::zeros({5}, DType::f64, kGpu);
      const UnpackedGuard guard(kernels::force_unpacked_lars, unpacked);
      for (int step = 0; step < 2; ++step) {  // the second step uses the momentum of the first
        ops::lars_step_(wc, gc, mc, layout, hyper, tc);
        ops::lars_step_(wg, gg, mg, layout, hyper, tg);
        const std::vector<double> trust_cpu = tc.to_vector<double>(), trust_gpu = tg.to_vector<double>();
        // Step 1: the same float inputs, the double sums in another order (~1e-15 apart). Step 2: the
        // parameters after step 1 differ by an ulp here and there (the host compiler and nvcc contract
        // lars_update's multiply-adds differently), which moves the ratios by up to ~3e-11.
        const double tolerance = step == 0 ? 1e-12 : 1e-9;
        for (size_t i = 0; i < trust_cpu.size(); ++i)
          CHECK(trust_gpu[i] == Approx(trust_cpu[i]).epsilon(tolerance));
        if (step == 0) {
          w_first_step[unpacked] = wg.to_vector<float>();
          m_first_step[unpacked] = mg.to_vector<float>();
        }
      }
      CHECK(rel_error(wg, wc) < 1e-6);
      CHECK(rel_error(mg, mc) < 1e-5);
      // the gaps, and the floats before and after the window, are never written
      const std::vector<float> w = w_gpu.to_vector<float>();
      for (const int64_t i : {int64_t(5), int64_t(16 + 5 * C + 7), int64_t(16 + 7 * C + 2), n - 1})
        CHECK(w[static_cast<size_t>(offset + i)] == w0_host[static_cast<size_t>(offset + i)]);
      CHECK(w[static_cast<size_t>(offset + n)] == w0_host[static_cast<size_t>(offset + n)]);
      if (offset == 1) CHECK(w[0] == w0_host[0]);
    }
    // Packs change how the sums are read, not the update: the same bits after one step (a trust ratio a
    // float rounding apart would show here; with these fixed inputs it either always does or never).
    CHECK(w_first_step[0] == w_first_step[1]);
    CHECK(m_first_step[0] == m_first_step[1]);
  }
}

TEST_CASE("CUDA AdamW and SGD match the CPU in packs and one float at a time, tails and any alignment",
          "[cuda][cuda-kernels]") {
  std::mt19937_64 gen(32);
  for (const int64_t n : {int64_t(1), int64_t(5), int64_t(4099)}) {
    for (const int64_t offset : {int64_t(0), int64_t(1)}) {
      const Tensor w0 = randn({n + 2}, gen), g0 = randn({n + 2}, gen, 0, 0.1),
                   m0 = randn({n + 2}, gen, 0, 0.1);
      std::vector<float> second = randn({n + 2}, gen, 0, 0.1).to_vector<float>();
      for (float& x : second) x *= x;  // AdamW's second moment is never negative
      const Tensor v0 = Tensor::from_vector(second, {n + 2});
      const auto window = [&](const Tensor& t) { return t.slice_rows(offset, offset + n); };
      std::vector<float> gpu_w[2][2];  // [optimizer][unpacked]
      for (const bool unpacked : {false, true}) {
        INFO("n " << n << " offset " << offset << (unpacked ? ", one float at a time" : ", packs"));
        const UnpackedGuard guard(kernels::force_unpacked_optimizers, unpacked);
        for (int which = 0; which < 2; ++which) {  // AdamW, then SGD with Nesterov momentum
          const Tensor wc = window(w0.clone()), mc = window(m0.clone()), vc = window(v0.clone());
          const Tensor w_gpu = w0.to(kGpu);
          const Tensor wg = window(w_gpu), mg = window(m0.to(kGpu)), vg = window(v0.to(kGpu));
          const Tensor gc = window(g0), gg = window(g0.to(kGpu));
          for (int t = 1; t <= 3; ++t) {
            if (which == 0) {
              const ops::AdamWHyper h{1e-2, 0.9, 0.999, 1e-8, 0.05, t};
              ops::adamw_step_(wc, mc, vc, gc, h);
              ops::adamw_step_(wg, mg, vg, gg, h);
            } else {
              ops::sgd_step_(wc, mc, gc, 0.05, 0.9, 1e-4, true);
              ops::sgd_step_(wg, mg, gg, 0.05, 0.9, 1e-4, true);
            }
          }
          CHECK(rel_error(wg, wc) < 1e-6);
          CHECK(rel_error(mg, mc) < 1e-6);
          if (which == 0) CHECK(rel_error(vg, vc) < 1e-6);
          const std::vector<float> w = w_gpu.to_vector<float>(), before = w0.to_vector<float>();
          CHECK(w[static_cast<size_t>(offset + n)] == before[static_cast<size_t>(offset + n)]);
          if (offset == 1) CHECK(w[0] == before[0]);
          gpu_w[which][unpacked] = wg.to_vector<float>();
        }
      }
      // one per-element formula: packs give the same bits as one float at a time
      CHECK(gpu_w[0][0] == gpu_w[0][1]);
      CHECK(gpu_w[1][0] == gpu_w[1][1]);
    }
  }
}

TEST_CASE("CUDA AdamW and SGD match the CPU over a registry's flat buffers", "[cuda][cuda-kernels]") {
  TrainConfig train = tiny_train();
  train.probe_classes = 7;
  Learner cpu(tiny_network(), train), gpu(tiny_network(), train);
  gpu.probe_params.to(kGpu);
  CHECK_THROWS_WITH(gpu.probe_optimizer->step(1e-3),
                    Catch::Matchers::Contains("AdamW: its first moment is on cpu"));
  gpu.probe_optimizer->to(kGpu);
  Sgd sgd_cpu(cpu.probe_params, {0.9, 1e-4, true});
  Sgd sgd_gpu(gpu.probe_params, {0.9, 1e-4, true});  // built after the move: its state starts on the GPU
  CHECK(sgd_gpu.momentum().device() == kGpu);
  std::mt19937_64 gen(13);
  for (int step = 0; step < 3; ++step) {  // later steps use the moments of the earlier ones
    const Tensor g = randn(cpu.probe_params.grads().shape(), gen, 0, 0.1);
    cpu.probe_params.grads().copy_(g);
    gpu.probe_params.grads().copy_(g);
    cpu.probe_optimizer->step(1e-2);
    gpu.probe_optimizer->step(1e-2);
    sgd_cpu.step(0.05);
    sgd_gpu.step(0.05);
  }
  CHECK(rel_error(gpu.probe_params.params(), cpu.probe_params.params()) < 1e-6);
  CHECK(rel_error(gpu.probe_optimizer->first_moment(), cpu.probe_optimizer->first_moment()) < 1e-6);
  CHECK(rel_error(gpu.probe_optimizer->second_moment(), cpu.probe_optimizer->second_moment()) < 1e-6);
  CHECK(rel_error(sgd_gpu.momentum(), sgd_cpu.momentum()) < 1e-6);
}

TEST_CASE("BatchUploader: pinned copies on the copy stream arrive before the compute stream uses them",
          "[cuda]") {
  std::mt19937_64 gen(14);
  BatchUploader uploader;
  for (int round = 0; round < 4; ++round) {  // both staging slots, twice, at growing sizes
    const Tensor a = randn({3 + round, 5, 7, 3}, gen), b = randn({3 + round, 5, 7, 3}, gen);
    const Tensor labels = Tensor::from_vector<int64_t>(std::vector<int64_t>(3 + round, round), {3 + round});
    const std::vector<Tensor> up = uploader.upload({a, b, labels, Tensor()}, kGpu);
    REQUIRE(up.size() == 4);
    CHECK_FALSE(up[3].defined());
    // queued on the compute stream right after the upload: must see the copied data
    const Tensor sum = ops::add(up[0], up[1]);
    CHECK(rel_error(sum, ops::add(a, b)) == 0);
    CHECK(up[2].to_vector<int64_t>() == labels.to_vector<int64_t>());
    CHECK(up[0].device() == kGpu);
  }
}

TEST_CASE("checkpoints of a learner on the GPU load bitwise into a learner on the CPU and back", "[cuda]") {
  const byol::test_util::TempDir tmp;
  const std::string path = (std::filesystem::path(tmp.path()) / "gpu.safetensors").string();
  TrainConfig train = tiny_train();
  train.probe_classes = 4;
  Learner gpu(tiny_network(), train);
  gpu.to(kGpu);
  std::mt19937_64 gen(15);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 3, 1, 2, 2, 1}, {6});
  gpu.step(randn({6, 10, 9, 3}, gen).to(kGpu), randn({6, 10, 9, 3}, gen).to(kGpu), labels.to(kGpu));
  save_checkpoint(path, gpu);
  Learner cpu(tiny_network(), train), back(tiny_network(), train);
  load_checkpoint(path, cpu);
  back.to(kGpu);
  load_checkpoint(path, back);  // straight onto the device
  auto same = [](const Tensor& a, const Tensor& b) { return a.to_vector<float>() == b.to_vector<float>(); };
  for (Learner* l : {&cpu, &back}) {
    CHECK(same(l->nets.online.params(), gpu.nets.online.params()));
    CHECK(same(l->nets.online.stats(), gpu.nets.online.stats()));
    CHECK(same(l->nets.target.params(), gpu.nets.target.params()));
    CHECK(same(l->lars.momentum(), gpu.lars.momentum()));
    CHECK(same(l->probe_params.params(), gpu.probe_params.params()));
    CHECK(same(l->probe_optimizer->second_moment(), gpu.probe_optimizer->second_moment()));
    CHECK(l->steps_done() == 1);
  }
  CHECK(back.nets.online.params().device() == kGpu);
  export_encoder((std::filesystem::path(tmp.path()) / "enc.safetensors").string(), gpu.nets.online,
                 "encoder.");
  Learner imported(tiny_network(), train);
  import_encoder((std::filesystem::path(tmp.path()) / "enc.safetensors").string(), imported.nets.online,
                 "encoder.");
  CHECK(
      same(imported.nets.online.find("encoder.conv1.weight"), gpu.nets.online.find("encoder.conv1.weight")));
}

TEST_CASE("a whole BYOL step on the GPU matches the same step on the CPU", "[cuda][cuda-step]") {
  Tf32Guard tf32(false);
  TrainConfig train = tiny_train();
  train.probe_classes = 4;
  train.probe_lr = 0.05;
  Learner cpu(tiny_network(), train), gpu(tiny_network(), train);
  gpu.to(kGpu);
  CHECK(gpu.device() == kGpu);
  CHECK(gpu.probe_params.params().device() == kGpu);
  CHECK(gpu.nets.online.grads().device() == kGpu);
  std::mt19937_64 gen(11);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 3, 1, 2, 2, 1}, {6});
  CHECK_THROWS_WITH(gpu.step(randn({6, 10, 9, 3}, gen), randn({6, 10, 9, 3}, gen)),
                    Catch::Matchers::Contains("must be on the learner's device cuda:0"));
  for (int step = 0; step < 2; ++step) {
    const Tensor v1 = randn({6, 10, 9, 3}, gen), v2 = randn({6, 10, 9, 3}, gen);
    const Tensor online_before = cpu.nets.online.params().clone();
    const StepValues mc = cpu.step(v1, v2, labels).read();
    poison_device_pool();
    const StepMetrics stepped = gpu.step(v1.to(kGpu), v2.to(kGpu), labels.to(kGpu));
    CHECK(stepped.values.device() == kGpu);  // the metrics stay on the device until read
    const StepValues mg = stepped.read();
    INFO("step " << step << ": loss cpu " << mc.loss << " gpu " << mg.loss);
    CHECK(std::abs(mg.loss - mc.loss) / std::abs(mc.loss) < 1e-5);
    CHECK(std::abs(mg.probe_loss - mc.probe_loss) / std::abs(mc.probe_loss) < 1e-4);
    CHECK(mg.probe_accuracy == mc.probe_accuracy);
    CHECK(rel_error(gpu.probe_params.params(), cpu.probe_params.params()) < 1e-4);
    CHECK(rel_error(gpu.nets.online.grads(), cpu.nets.online.grads()) < 1e-3);
    CHECK(rel_error(gpu.nets.online.params(), cpu.nets.online.params()) < 1e-5);
    CHECK(rel_error(ops::add(gpu.nets.online.params().to(Device::cpu()), ops::scale(online_before, -1.0)),
                    ops::add(cpu.nets.online.params(), ops::scale(online_before, -1.0))) < 1e-3);
    CHECK(rel_error(gpu.lars.momentum(), cpu.lars.momentum()) < 1e-3);
    CHECK(rel_error(gpu.nets.target.params(), cpu.nets.target.params()) < 1e-5);
    CHECK(rel_error(gpu.nets.online.stats(), cpu.nets.online.stats()) < 1e-5);
    CHECK(rel_error(gpu.nets.target.stats(), cpu.nets.target.stats()) < 1e-5);
  }
}

TEST_CASE("the PyTorch reference step reproduces on the GPU", "[cuda]") {
  Tf32Guard tf32(false);
  const SafetensorsFile ref = load_safetensors(test_util::reference_fixture_path());
  std::unique_ptr<Learner> owned = test_util::learner_from_fixture(ref);
  Learner& learner = *owned;
  auto& online = learner.nets.online;
  auto& target = learner.nets.target;
  learner.to(kGpu);

  const StepValues m = learner.step(ref.get("input.view1").to(kGpu), ref.get("input.view2").to(kGpu)).read();
  const double ref_loss = ref.get("loss").item();
  INFO("loss: gpu " << m.loss << ", reference " << ref_loss);
  CHECK(std::abs(m.loss - ref_loss) / std::abs(ref_loss) < 1e-5);
  double worst = 0;
  std::string worst_name;
  auto check = [&](const std::string& what, const Tensor& ours, const std::string& ref_name) {
    const double e = rel_error(ours, ref.get(ref_name));
    if (e > worst) worst = e, worst_name = what;
    INFO(what << ": relative error " << e);
    CHECK(e < 1e-4);
  };
  for (const auto& e : online.param_entries()) {
    check("online " + e.name, *e.slot, "updated.online." + e.name);
    check("momentum " + e.name, learner.lars.momentum().window(e.offset, e.shape),
          "updated.momentum." + e.name);
  }
  for (const auto& e : target.param_entries()) check("target " + e.name, *e.slot, "updated.target." + e.name);
  for (const auto& e : online.stat_entries())
    check("online stat " + e.name, *e.slot, "updated.online_stats." + e.name);
  for (const auto& e : target.stat_entries())
    check("target stat " + e.name, *e.slot, "updated.target_stats." + e.name);
  std::printf("reference step on the GPU: worst relative error %.2e (%s); loss %.8f vs %.8f\n", worst,
              worst_name.c_str(), m.loss, ref_loss);
}

TEST_CASE("CUDA unified objective (InfoNCE term, beta 0.5 and 1) matches the CPU", "[cuda]") {
  std::mt19937_64 gen(16);
  for (Shape s : {Shape{1, 3}, Shape{7, 33}, Shape{64, 128}}) {
    for (double beta : {0.5, 1.0}) {
      UnifiedObjective objective({beta, 0.2});
      check_against_cpu(
          "unified objective beta " + std::to_string(beta) + " " + shape_str(s),
          {randn(s, gen), randn(s, gen), randn(s, gen), randn(s, gen)}, {true, true, true, true},
          [&](const std::vector<Tensor>& in) { return objective.loss(in[0], in[1], in[2], in[3]); }, 1e-5);
    }
  }
}

#endif  // BYOL_WITH_CUDA
