// Kernel lab: the cross-entropy family on the device — the shipping kernels of engine/cuda/cross_entropy.cu
// (softmax cross-entropy forward and backward, the linear probe's top-1 count), validated against the CPU
// backend, then timed.
//
//   build: cmake --build build-cuda --target cross_entropy_lab
//   run:   build-cuda/benchmarks/cross_entropy_lab [N K] [--json FILE]
//          (default [256, 10]: a CIFAR-10 batch, then [4096, 1000]: an ImageNet per-GPU batch)
//
// Versions:
//   1. softmax cross-entropy: forward one warp per row (max, sum of exponentials and log Z in double, the
//      batch mean by the deterministic grid sum, its partials added by one thread), backward one thread per
//      element.
//   2. softmax forward: the grid sum's partials added by the last block's 256 threads (grid_sum.cuh).
//   1. top-1 count: one block, one thread per row (a serial argmax over K), a fixed-order shared-memory sum:
//      0.2 % of the copy bandwidth at [4096, 1000] on an H200 (2026-12-04). A copy is kept here and timed
//      next to version 2.
//   2. top-1 count (shipping): one warp per row over a grid, lanes striding over the row, the lanes' first
//      maxima combined by a butterfly; the count by the grid sum.
// Validation (softmax cross-entropy): [1, 1], [7, 3], [5, 33], [256, 10], [4096, 1000], logits N(0, 3^2),
// i64 and i32 labels, against ops::softmax_cross_entropy on the CPU (the same row formulas,
// engine/math/cross_entropy.h): the loss within 1e-6 relative, probabilities and gradients within 1e-6
// absolute (float rounding of exp in the two libms); an out-of-range label must give a NaN loss.
// Validation (top-1): [1, 1], [7, 3], [5, 33], [256, 10], [300, 10] and [4096, 1000], i64 and i32 labels.
// Logits on a coarse grid (many ties), every other row given a copy of its maximum at a later column; labels
// the first maximum, the later tied one, or anything in [-1, K] (-1 and K never match). The count is poisoned
// (NaN) before each launch and must equal the CPU's exactly.
// Bytes counted: softmax forward reads the logits and writes the probabilities (2 N K floats), backward
// reads the probabilities and writes the gradient (2 N K floats); top-1 reads the logits (N K floats). The
// N labels are not counted.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cuda/context.h"
#include "engine/cuda/cross_entropy.cuh"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/launch.h"
#include "engine/cuda/timing.h"
#include "engine/math/cross_entropy.h"
#include "engine/ops.h"

using namespace byol;

namespace {

using Shape2 = std::pair<int64_t, int64_t>;  // N rows, K classes

// Version 1 of the top-1 count (engine/cuda/cross_entropy.cu until 2026-12-05), kept for its timing.
template <class I>
__global__ void v1_count_top1_correct_kernel(const float* __restrict__ logits, const I* __restrict__ labels,
                                             int64_t N, int64_t K, float* __restrict__ count) {
  __shared__ int64_t partial[kernels::kThreads];
  int64_t mine = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
    mine += math::argmax_first(logits + i * K, K) == static_cast<int64_t>(labels[i]);
  partial[threadIdx.x] = mine;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) count[0] = static_cast<float>(partial[0]);
}

// The GPU count of one launch, the output poisoned first.
template <class I>
double gpu_count(const Tensor& logits, const Tensor& labels, int64_t N, int64_t K) {
  const Tensor count = Tensor::full({}, std::numeric_limits<double>::quiet_NaN(), DType::f32, Device::cuda());
  kernels::count_top1_correct(logits.data<float>(), labels.data<I>(), N, K, count.data<float>(),
                              cuda::compute_stream());
  return count.item();
}

// Softmax cross-entropy on the GPU (the shipping launchers) against the CPU op on the same logits.
template <class I>
bool validate_softmax_shape(lab::Report& report, int64_t N, int64_t K, std::mt19937_64& gen) {
  const Device gpu = Device::cuda();
  const Tensor logits = Tensor::randn({N, K}, gen, DType::f32, 0.0, 3.0);
  std::vector<I> labels(N);
  std::uniform_int_distribution<int64_t> pick(0, K - 1);
  for (auto& v : labels) v = static_cast<I>(pick(gen));
  const Tensor lab = Tensor::from_vector(labels, {N});
  // The CPU op's loss, probabilities (as its gradient at g = N: probs - onehot) and gradient at g = 1.
  Tensor x = logits.clone();
  x.set_requires_grad(true);
  const Tensor loss = ops::softmax_cross_entropy(x, lab);
  loss.backward();
  const std::vector<float> cpu_grad = x.grad().to_vector<float>();
  const double cpu_loss = loss.item();

  const Tensor dl = logits.to(gpu), dlab = lab.to(gpu);
  const Tensor probs = Tensor::full({N, K}, std::numeric_limits<double>::quiet_NaN(), DType::f32, gpu);
  const Tensor dloss = Tensor::full({}, std::numeric_limits<double>::quiet_NaN(), DType::f32, gpu);
  const Tensor g = Tensor::full({}, 1.0, DType::f32, gpu);
  const Tensor dgrad = Tensor::full({N, K}, std::numeric_limits<double>::quiet_NaN(), DType::f32, gpu);
  cudaStream_t s = cuda::compute_stream();
  kernels::softmax_cross_entropy_forward(dl.data<float>(), dlab.data<I>(), probs.data<float>(),
                                         dloss.data<float>(), N, K, s);
  kernels::softmax_cross_entropy_backward(probs.data<float>(), dlab.data<I>(), g.data<float>(),
                                          dgrad.data<float>(), N, K, s);
  const double gpu_loss = dloss.item();
  const std::vector<float> gpu_grad = dgrad.to_vector<float>();
  const std::vector<float> gpu_probs = probs.to_vector<float>();
  double grad_err = 0, prob_sum_err = 0;
  for (size_t i = 0; i < gpu_grad.size(); ++i)
    grad_err = std::max(grad_err, std::abs(double(gpu_grad[i]) - double(cpu_grad[i])));
  for (int64_t i = 0; i < N; ++i) {
    double row = 0;
    for (int64_t k = 0; k < K; ++k) row += gpu_probs[i * K + k];
    prob_sum_err = std::max(prob_sum_err, std::abs(row - 1.0));
  }
  const double loss_err = std::abs(gpu_loss - cpu_loss) / std::max(1e-12, std::abs(cpu_loss));
  // An out-of-range label (K) in row 0 must make the GPU loss NaN rather than read outside the row.
  std::vector<I> bad = labels;
  bad[0] = static_cast<I>(K);
  const Tensor dbad = Tensor::from_vector(bad, {N}).to(gpu);
  kernels::softmax_cross_entropy_forward(dl.data<float>(), dbad.data<I>(), probs.data<float>(),
                                         dloss.data<float>(), N, K, s);
  const bool nan_on_bad = std::isnan(dloss.item());
  const bool ok = loss_err <= 1e-6 && grad_err <= 1e-6 && prob_sum_err <= 1e-5 && nan_on_bad;
  std::printf(
      "  softmax CE [%lld, %lld] %s labels: loss rel err %.2e, max |grad err| %.2e, max |row sum - 1| "
      "%.2e, NaN on a bad label: %s%s\n",
      (long long)N, (long long)K, sizeof(I) == 8 ? "i64" : "i32", loss_err, grad_err, prob_sum_err,
      nan_on_bad ? "yes" : "NO", ok ? "" : "  MISMATCH");
  report.validated(
      "softmax [" + std::to_string(N) + ", " + std::to_string(K) + "] " + (sizeof(I) == 8 ? "i64" : "i32"),
      ok,
      {{"N", N},
       {"K", K},
       {"loss_rel_err", loss_err},
       {"max_grad_err", grad_err},
       {"max_row_sum_err", prob_sum_err},
       {"nan_on_bad_label", nan_on_bad}});
  return ok;
}

bool validate_softmax(lab::Report& report) {
  std::mt19937_64 gen(2);
  bool ok = true;
  for (const auto& [N, K] : std::vector<Shape2>{{1, 1}, {7, 3}, {5, 33}, {256, 10}, {4096, 1000}}) {
    ok = validate_softmax_shape<int64_t>(report, N, K, gen) && ok;
    ok = validate_softmax_shape<int32_t>(report, N, K, gen) && ok;
  }
  std::printf("validation vs CPU (softmax cross-entropy): %s\n", ok ? "OK" : "FAILED");
  return ok;
}

bool validate(lab::Report& report) {
  std::mt19937_64 gen(0);
  const Device gpu = Device::cuda();
  bool ok = true;
  for (const auto& [N, K] :
       std::vector<Shape2>{{1, 1}, {7, 3}, {5, 33}, {256, 10}, {300, 10}, {4096, 1000}}) {
    std::vector<float> l = Tensor::randn({N, K}, gen).to_vector<float>();
    for (float& v : l) v = std::round(v * 2) / 2;
    std::vector<int64_t> labels(N);
    std::uniform_int_distribution<int64_t> any(-1, K), kind(0, 2);
    int64_t expected = 0, ties = 0;
    for (int64_t i = 0; i < N; ++i) {
      float* row = l.data() + i * K;
      const int64_t first = std::max_element(row, row + K) - row;
      int64_t later = first;
      if (i % 2 == 0 && first + 1 < K) {
        later = std::uniform_int_distribution<int64_t>(first + 1, K - 1)(gen);
        row[later] = row[first];
      }
      const int64_t k = kind(gen);
      labels[i] = k == 0 ? first : k == 1 ? later : any(gen);
      ties += later != first && labels[i] == later;
      expected += std::max_element(row, row + K) - row == labels[i];
    }
    const Tensor logits = Tensor::from_vector(l, {N, K}), lab64 = Tensor::from_vector(labels, {N});
    const Tensor lab32 = Tensor::from_vector(std::vector<int32_t>(labels.begin(), labels.end()), {N});
    const double op = ops::count_top1_correct(logits, lab64).item();
    const Tensor dl = logits.to(gpu), d64 = lab64.to(gpu), d32 = lab32.to(gpu);
    const double g64 = gpu_count<int64_t>(dl, d64, N, K), g32 = gpu_count<int32_t>(dl, d32, N, K);
    const bool same = op == double(expected) && g64 == double(expected) && g32 == double(expected);
    std::printf(
        "  [%lld, %lld]: loop %lld, CPU op %.0f, GPU i64 %.0f, GPU i32 %.0f (%lld labels on a later tie)%s\n",
        (long long)N, (long long)K, (long long)expected, op, g64, g32, (long long)ties,
        same ? "" : "  MISMATCH");
    ok = ok && same;
    const double want = double(expected);
    const double e = std::max({std::abs(op - want), std::abs(g64 - want), std::abs(g32 - want)});
    char name[64];  // (a std::string "[" + ... here drew a false -Wrestrict from GCC 12's inliner)
    std::snprintf(name, sizeof name, "[%lld, %lld]", (long long)N, (long long)K);
    report.validated(name, same, {{"N", N}, {"K", K}, {"exact", true}, {"max_count_error", e}});
  }
  std::printf("validation vs CPU: counts exact, i64 and i32 labels: %s\n", ok ? "OK" : "FAILED");
  return ok;
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const std::vector<Shape2> shapes = sizes.empty() ? std::vector<Shape2>{{256, 10}, {4096, 1000}}
                                                   : std::vector<Shape2>{{sizes[0], sizes[1]}};
  for (const auto& [N, K] : shapes) report.options["shapes"].push_back({{"N", N}, {"K", K}});
  std::printf("cross_entropy_lab: softmax_cross_entropy and count_top1_correct on");
  for (const auto& [N, K] : shapes) std::printf(" [%lld, %lld]", (long long)N, (long long)K);
  std::printf(" logits, i64 labels\n");
  const bool softmax_ok = validate_softmax(report);
  bool valid = validate(report) && softmax_ok;
  lab::timing_anyway(valid);

  report.measure_copy_bandwidth();
  const Device gpu = Device::cuda();
  cudaStream_t s = cuda::compute_stream();
  std::mt19937_64 gen(1);
  for (const Shape2& shape : shapes) {
    const int64_t N = shape.first, K = shape.second;  // named here: the lambda below captures them
    std::vector<int64_t> labels(N);
    std::uniform_int_distribution<int64_t> pick(0, K - 1);
    for (auto& v : labels) v = pick(gen);
    const Tensor logits = Tensor::randn({N, K}, gen).to(gpu), lab = Tensor::from_vector(labels, {N}).to(gpu);
    Tensor count = Tensor::empty({}, DType::f32, gpu);
    Tensor probs = Tensor::empty({N, K}, DType::f32, gpu), dlogits = Tensor::empty({N, K}, DType::f32, gpu);
    Tensor loss = Tensor::empty({}, DType::f32, gpu);
    const Tensor g = Tensor::full({}, 1.0, DType::f32, gpu);
    auto forward = [&] {
      kernels::softmax_cross_entropy_forward(logits.data<float>(), lab.data<int64_t>(), probs.data<float>(),
                                             loss.data<float>(), N, K, s);
    };
    auto backward_pass = [&] {
      kernels::softmax_cross_entropy_backward(probs.data<float>(), lab.data<int64_t>(), g.data<float>(),
                                              dlogits.data<float>(), N, K, s);
    };
    forward();
    char fname[64], bname[64];
    std::snprintf(fname, sizeof fname, "v2 softmax forward [%lld, %lld]", (long long)N, (long long)K);
    std::snprintf(bname, sizeof bname, "v1 softmax backward [%lld, %lld]", (long long)N, (long long)K);
    report.timing(fname, cuda::time_on_compute_stream(forward),
                  2.0 * static_cast<double>(N * K) * sizeof(float), {{"N", N}, {"K", K}});
    report.timing(bname, cuda::time_on_compute_stream(backward_pass),
                  2.0 * static_cast<double>(N * K) * sizeof(float), {{"N", N}, {"K", K}});
    auto top1 = [&] {
      kernels::count_top1_correct(logits.data<float>(), lab.data<int64_t>(), N, K, count.data<float>(), s);
    };
    auto v1_top1 = [&] {
      v1_count_top1_correct_kernel<<<1, kernels::kThreads, 0, s>>>(logits.data<float>(), lab.data<int64_t>(),
                                                                   N, K, count.data<float>());
      BYOL_CUDA_CHECK_LAUNCH();
    };
    v1_top1();
    const double v1_count = count.item();
    top1();
    if (count.item() != v1_count) {
      std::printf("top1 [%lld, %lld]: version 1 counts %.0f, version 2 %.0f: FAILED\n", (long long)N,
                  (long long)K, v1_count, count.item());
      valid = false;
    }
    char name[64];
    std::snprintf(name, sizeof name, "v1 top1 [%lld, %lld]", (long long)N, (long long)K);
    report.timing(name, cuda::time_on_compute_stream(v1_top1), static_cast<double>(N * K) * sizeof(float),
                  {{"N", N}, {"K", K}});
    std::snprintf(name, sizeof name, "v2 top1 [%lld, %lld]", (long long)N, (long long)K);
    report.timing(name, cuda::time_on_compute_stream(top1), static_cast<double>(N * K) * sizeof(float),
                  {{"N", N}, {"K", K}});
  }
  return valid ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "cross_entropy_lab",
                       "cross_entropy_lab [N K] [--json FILE]   (default [256, 10], then [4096, 1000])",
                       {0, 2}, run);
}
