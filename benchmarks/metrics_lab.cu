// Kernel lab: the linear probe's top-1 count on the device — the shipping kernel of kernels/metrics.cu,
// validated against a CPU loop (std::max_element: ties go to the first maximum) and the CPU op
// (ops::count_top1_correct), then timed.
//
//   build: cmake --build build-cuda --target metrics_lab
//   run:   build-cuda/benchmarks/metrics_lab [N K] [--json FILE]
//          (default [256, 10]: a CIFAR-10 batch, then [4096, 1000]: an ImageNet per-GPU batch)
//
// Versions:
//   1. shipping: one block, one thread per row (a serial argmax over K), a fixed-order shared-memory sum.
// Validation: [1, 1], [7, 3], [5, 33], [256, 10], [300, 10] and [4096, 1000], i64 and i32 labels. Logits
// on a coarse grid (many ties), every other row given a copy of its maximum at a later column; labels the
// first maximum, the later tied one, or anything in [-1, K] (-1 and K never match). The count is poisoned
// (NaN) before each launch and must equal the CPU's exactly.
// Bytes counted: the logits read (N K floats; the N labels are not counted).
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
#include "engine/cuda/timing.h"
#include "engine/ops.h"
#include "kernels/metrics.cuh"

using namespace byol;

namespace {

using Shape2 = std::pair<int64_t, int64_t>;  // N rows, K classes

// The GPU count of one launch, the output poisoned first.
template <class I>
double gpu_count(const Tensor& logits, const Tensor& labels, int64_t N, int64_t K) {
  const Tensor count = Tensor::full({}, std::numeric_limits<double>::quiet_NaN(), DType::f32, Device::cuda());
  kernels::count_top1_correct(logits.data<float>(), labels.data<I>(), N, K, count.data<float>(),
                              cuda::compute_stream());
  return count.item();
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
    report.validated("[" + std::to_string(N) + ", " + std::to_string(K) + "]", same,
                     {{"N", N}, {"K", K}, {"exact", true}, {"max_count_error", e}});
  }
  std::printf("validation vs CPU: counts exact, i64 and i32 labels: %s\n", ok ? "OK" : "FAILED");
  return ok;
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& sizes) {
  const std::vector<Shape2> shapes = sizes.empty() ? std::vector<Shape2>{{256, 10}, {4096, 1000}}
                                                   : std::vector<Shape2>{{sizes[0], sizes[1]}};
  for (const auto& [N, K] : shapes) report.options["shapes"].push_back({{"N", N}, {"K", K}});
  std::printf("metrics_lab: count_top1_correct on");
  for (const auto& [N, K] : shapes) std::printf(" [%lld, %lld]", (long long)N, (long long)K);
  std::printf(" logits, i64 labels\n");
  if (!validate(report)) return 1;

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
    auto top1 = [&] {
      kernels::count_top1_correct(logits.data<float>(), lab.data<int64_t>(), N, K, count.data<float>(), s);
    };
    char name[64];
    std::snprintf(name, sizeof name, "v1 top1 [%lld, %lld]", (long long)N, (long long)K);
    report.timing(name, cuda::time_on_compute_stream(top1), static_cast<double>(N * K) * sizeof(float),
                  {{"N", N}, {"K", K}});
  }
  return 0;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "metrics_lab",
                       "metrics_lab [N K] [--json FILE]   (default [256, 10], then [4096, 1000])", {0, 2},
                       run);
}
