// Kernel lab: AdamW and SGD (momentum, Nesterov) over a flat parameter buffer — the shipping kernels of
// engine/cuda/optimizers.cu, validated against a CPU loop over the same per-element functions
// (math::adamw_update, math::sgd_update of engine/math/optimizers.h), then timed.
//
//   build: cmake --build build-cuda --target optimizers_lab
//   run:   build-cuda/benchmarks/optimizers_lab [n] [--json FILE]
//          (default 35e6 floats: ResNet-50 + BYOL's projector and predictor, then 11e6: ResNet-18)
//
// Versions:
//   1. one grid-stride launch per step, scalar loads/stores, hyper-parameters by value: AdamW at 75-78 %,
//      SGD at 88-94 % of the copy bandwidth on an H200 (2026-12-04). kernels::force_unpacked_optimizers
//      runs it.
//   2. shipping: the same launch in packs of 4 floats (16-byte loads and stores), the n % 4 tail one at a
//      time.
// Validation, both versions: n = 0, 1, 3, 5, 1001, 4099 and 4194319 (more than one grid of kMaxBlocks x
// kThreads threads), three steps from random state (nonzero moments), the same gradient each step. Each
// output within 1e-5 (max-norm relative) of the CPU loop: not bitwise, nvcc contracts multiply-adds into FMAs
// where the host compiler need not. No element left as it was where the CPU changed it, and the 7 poisoned
// floats past n of every buffer left bitwise as they were. Bytes counted: AdamW reads w, m, v, g and writes
// w, m, v (7 n floats); SGD reads w, m, g and writes w, m (5 n floats).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cuda/context.h"
#include "engine/cuda/optimizers.cuh"
#include "engine/cuda/timing.h"
#include "engine/math/optimizers.h"
#include "engine/tensor.h"

using namespace byol;

namespace {

constexpr int64_t kTail = 7;               // poisoned floats past n in every validation buffer
constexpr uint32_t kPoison = 0x7fc0deadu;  // a quiet NaN with a payload no kernel writes
constexpr double kTolerance = 1e-5;

constexpr float kAdamLr = 1e-2f, kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f, kAdamWd = 0.05f;
constexpr float kSgdLr = 0.05f, kMomentum = 0.9f, kSgdWd = 1e-4f;

// The hyper-parameters of AdamW's step t (bias corrections in double on the host, as byol::AdamW does).
kernels::AdamWHyper adamw_hyper(int t) {
  return {kAdamLr,
          kBeta1,
          kBeta2,
          kEps,
          kAdamWd,
          static_cast<float>(1.0 - std::pow(double(kBeta1), t)),
          static_cast<float>(1.0 - std::pow(double(kBeta2), t))};
}

// n random floats (squared when `positive`, for AdamW's second moment), then kTail poisoned ones.
std::vector<float> host_buffer(int64_t n, std::mt19937_64& gen, double stddev, bool positive = false) {
  std::vector<float> v = Tensor::randn({n + kTail}, gen, DType::f32, 0.0, stddev).to_vector<float>();
  if (positive)
    for (float& x : v) x *= x;
  for (int64_t i = n; i < n + kTail; ++i) v[i] = std::bit_cast<float>(kPoison);
  return v;
}

Tensor upload(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}).to(Device::cuda());
}

// One optimizer's validation over all sizes and outputs.
struct Check {
  double worst = 0;       // max-norm relative error of any output at any size (NaN stays NaN)
  int64_t unchanged = 0;  // elements the CPU changed and the GPU left as they were
  int64_t tail = 0;       // poisoned floats past n that the GPU overwrote

  void compare(const Tensor& got_gpu, const std::vector<float>& want, const std::vector<float>& before,
               int64_t n) {
    const std::vector<float> got = got_gpu.to_vector<float>();
    double d = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::abs(double(got[i]) - want[i]);
      if (!(e <= d)) d = e;
      scale = std::max(scale, std::abs(double(want[i])));
      unchanged += got[i] == before[i] && want[i] != before[i];
    }
    const double r = d / std::max(scale, 1e-30);
    if (!(r <= worst)) worst = r;
    for (int64_t i = n; i < n + kTail; ++i) tail += std::bit_cast<uint32_t>(got[i]) != kPoison;
  }

  bool report(lab::Report& report, const char* name) const {
    const bool ok = worst < kTolerance && unchanged == 0 && tail == 0;
    report.validated(name, ok,
                     {{"max_rel_error", worst},
                      {"tolerance", kTolerance},
                      {"unchanged", unchanged},
                      {"tail_written", tail}});
    std::printf(
        "validation vs CPU: %-14s %.2e (tolerance %.0e), %lld unchanged, %lld tail floats written: %s\n",
        name, worst, kTolerance, (long long)unchanged, (long long)tail, ok ? "OK" : "FAILED");
    return ok;
  }
};

bool validate(lab::Report& report, bool unpacked) {
  std::mt19937_64 gen(0);
  Check adamw, sgd, nesterov;
  kernels::force_unpacked_optimizers(unpacked);
  for (const int64_t n : {0, 1, 3, 5, 1001, 4099, 4194319}) {
    const std::vector<float> w0 = host_buffer(n, gen, 1.0), g = host_buffer(n, gen, 0.1);
    const std::vector<float> m0 = host_buffer(n, gen, 0.1), v0 = host_buffer(n, gen, 0.1, true);
    {
      std::vector<float> w = w0, m = m0, v = v0;
      Tensor dw = upload(w0), dm = upload(m0), dv = upload(v0), dg = upload(g);
      for (int t = 1; t <= 3; ++t) {
        const kernels::AdamWHyper h = adamw_hyper(t);
        kernels::adamw_step(dw.data<float>(), dm.data<float>(), dv.data<float>(), dg.data<float>(), n, h,
                            cuda::compute_stream());
        for (int64_t i = 0; i < n; ++i)
          math::adamw_update(w[i], m[i], v[i], g[i], h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.bias1,
                             h.bias2);
      }
      adamw.compare(dw, w, w0, n);
      adamw.compare(dm, m, m0, n);
      adamw.compare(dv, v, v0, n);
    }
    for (const bool nest : {false, true}) {
      std::vector<float> w = w0, m = m0;
      Tensor dw = upload(w0), dm = upload(m0), dg = upload(g);
      for (int t = 1; t <= 3; ++t) {
        kernels::sgd_step(dw.data<float>(), dm.data<float>(), dg.data<float>(), n, kSgdLr, kMomentum, kSgdWd,
                          nest, cuda::compute_stream());
        for (int64_t i = 0; i < n; ++i) math::sgd_update(w[i], m[i], g[i], kSgdWd, kSgdLr, kMomentum, nest);
      }
      Check& c = nest ? nesterov : sgd;
      c.compare(dw, w, w0, n);
      c.compare(dm, m, m0, n);
    }
  }
  kernels::force_unpacked_optimizers(false);
  const std::string version = unpacked ? "v1 " : "v2 ";
  const bool a = adamw.report(report, (version + "adamw").c_str()),
             b = sgd.report(report, (version + "sgd").c_str()),
             c = nesterov.report(report, (version + "sgd nesterov").c_str());
  return a && b && c;
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>& given) {
  const std::vector<int64_t> sizes = given.empty() ? std::vector<int64_t>{35000000, 11000000} : given;
  report.options = {{"n", sizes}};
  std::printf("optimizers_lab: n =");
  for (const int64_t n : sizes) std::printf(" %lld", (long long)n);
  std::printf(" floats\n");
  const bool valid_v1 = validate(report, true);
  const bool valid = validate(report, false) && valid_v1;
  lab::timing_anyway(valid);

  report.measure_copy_bandwidth();
  const Device gpu = Device::cuda();
  cudaStream_t s = cuda::compute_stream();
  std::mt19937_64 gen(1);
  for (const int64_t n : sizes) {
    Tensor w = Tensor::randn({n}, gen).to(gpu), g = Tensor::randn({n}, gen, DType::f32, 0.0, 1e-3).to(gpu);
    Tensor m = Tensor::zeros({n}, DType::f32, gpu), v = Tensor::zeros({n}, DType::f32, gpu);
    const kernels::AdamWHyper h = adamw_hyper(1);
    auto adamw = [&] {
      kernels::adamw_step(w.data<float>(), m.data<float>(), v.data<float>(), g.data<float>(), n, h, s);
    };
    auto sgd = [&](bool nest) {
      kernels::sgd_step(w.data<float>(), m.data<float>(), g.data<float>(), n, kSgdLr, kMomentum, kSgdWd, nest,
                        s);
    };
    const double floats = static_cast<double>(n) * sizeof(float);
    for (const bool unpacked : {true, false}) {
      const char* version = unpacked ? "v1" : "v2";
      kernels::force_unpacked_optimizers(unpacked);
      char name[64];
      std::snprintf(name, sizeof name, "%s adamw (n = %.1fM)", version, n / 1e6);
      report.timing(name, cuda::time_on_compute_stream(adamw), 7 * floats, {{"n", n}});
      std::snprintf(name, sizeof name, "%s sgd momentum (n = %.1fM)", version, n / 1e6);
      report.timing(name, cuda::time_on_compute_stream([&] { sgd(false); }), 5 * floats, {{"n", n}});
      std::snprintf(name, sizeof name, "%s sgd nesterov (n = %.1fM)", version, n / 1e6);
      report.timing(name, cuda::time_on_compute_stream([&] { sgd(true); }), 5 * floats, {{"n", n}});
      kernels::force_unpacked_optimizers(false);
    }
  }
  return valid ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "optimizers_lab",
                       "optimizers_lab [n] [--json FILE]   (default 35e6 floats, then 11e6)", {0, 1}, run);
}
