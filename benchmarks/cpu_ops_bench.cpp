// CPU op benchmark: the convolutions and batch norms of ResNet-18 with the CIFAR stem at batch 64,
// each next to the Eigen GEMM of the same matrix sizes, plus the machine's measured FP32 peak.
//
//   build/benchmarks/cpu_ops_bench [batch=64] [repeats=5] [--json FILE]
//
// conv2d runs three ways: im2col + GEMM (engine/cpu/conv.cpp), oneDNN's direct convolutions, and oneDNN
// with Winograd for the 3x3 stride-1 shapes (engine/cpu/conv_onednn.cpp, when the build has oneDNN); all
// are timed in the same run. "GEMM-equivalent"
// is the plain GEMM im2col reduces to:
//   forward          [N*P*Q, R*S*C] x [R*S*C, K]
//   backward data    [N*P*Q, K] x [K, R*S*C]
//   backward filter  [K, N*P*Q] x [N*P*Q, R*S*C]
// and comparing im2col with it tells what im2col, col2im and chunking cost. Times are medians over the
// repeats after one warm-up; FLOPs count a multiply-add as two. The peak is measured with a register-
// resident FMA loop on every OpenMP thread, so it reflects this machine's clocks, not a datasheet.
// --json FILE writes every printed figure as one JSON object (benchmarks/bench_json.h), one row per line
// of the tables: "gemm", "conv2d" (per shape: each pass's time and GFLOP/s per algorithm),
// "conv2d_network", "conv2d_bf16" (per shape and pass: fp32, oneDNN's bf16 kernels, im2col + bf16 matmul,
// and which one ships), "conv2d_bf16_network" and "batch_norm".
#include <omp.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_json.h"
#include "engine/cpu/cpu_backend.h"

namespace {

using Clock = std::chrono::steady_clock;
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double median_seconds(int repeats, const std::function<void()>& f) {
  f();  // warm-up: page faults, Eigen's blocking buffers
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// FP32 peak: 12 independent vector FMA chains per thread (enough to cover FMA latency x throughput).
// __builtin_elementwise... is not in GCC 12, so the FMA is requested through the vector extension with
// -ffp-contract=fast on this file (see benchmarks/CMakeLists.txt).
double measured_peak_gflops() {
  using V = float __attribute__((vector_size(32)));
  constexpr int kChains = 12, kLanes = sizeof(V) / sizeof(float);
  const long iters = 50'000'000;
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    float sink = 0;
    auto t0 = Clock::now();
#pragma omp parallel reduction(+ : sink)
    {
      V acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = V{} + 0.001f * (c + omp_get_thread_num());
      V a = V{} + 0.999999f, b = V{} + 1e-7f;
      asm volatile("" : "+v"(a), "+v"(b));
      for (long i = 0; i < iters; ++i) {
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
      }
      for (int c = 0; c < kChains; ++c)
        for (int l = 0; l < kLanes; ++l) sink += acc[c][l];
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * kChains * kLanes * iters * omp_get_max_threads() / s / 1e9);
    if (sink == 12345.0f) std::printf(" ");
  }
  return best;
}

// Read + write bandwidth of a parallel copy of `bytes` bytes (the memory-bound kernels' yardstick at
// the same working-set size, so cache-resident sizes are compared with cache-resident copies).
double copy_gbs(size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> src(n, 1.0f), dst(n);
  const double s = median_seconds(repeats, [&] {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  });
  return 2.0 * bytes / s / 1e9;
}

struct ConvShape {
  const char* name;
  int count;  // how many times ResNet-18 (CIFAR stem) uses this shape
  int64_t hw, c, k, r, stride, pad;
};

std::vector<float> random_vec(size_t n, std::mt19937& gen) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"cpu_ops_bench: ResNet-18 (CIFAR stem) convolutions and batch norms on the CPU next to GEMMs"};
  int64_t N = 64;
  int repeats = 5;
  cli.add_option("batch", N, "batch size")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  cli.add_option("repeats", repeats, "timed repeats per op (the median is reported)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  std::string json_path;
  cli.add_option("--json", json_path, "also write the results to FILE as one JSON object")->type_name("FILE");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;  // --help: 0; a usage error: 2, as the apps
  }
  std::mt19937 gen(1);

  std::printf("CPU op benchmark, %d OpenMP threads, batch %lld, median of %d\n", omp_get_max_threads(),
              static_cast<long long>(N), repeats);
  const double peak = measured_peak_gflops();
  std::printf("measured FP32 peak (FMA loop, all threads): %.1f GFLOP/s\n\n", peak);
  const bool onednn = byol::cpu::onednn_available();
  byol::bench::Json result = byol::bench::result_header("cpu_ops_bench");
  result["openmp_threads"] = omp_get_max_threads();
  result["onednn"] = onednn;
  result["peak_gflops"] = peak;
  result["options"] = {{"batch", N}, {"repeats", repeats}};
  // Keys every run writes, made before `rows` refers into `result` (an ordered map kept in a vector: a key
  // added later could move it and leave `rows` dangling, which is how a key added on 2026-12-05 crashed the
  // batch-norm section).
  result["onednn_implementations"] = byol::bench::Json::array();
  result["conv2d_bf16_skipped"] = nullptr;
  byol::bench::Json& rows = result["rows"] = byol::bench::Json::array();
  // A pass's figures under `prefix`: its time and rate, left out when it was not measured.
  auto timed = [&](byol::bench::Json& row, const std::string& prefix, double seconds, double flops) {
    if (seconds <= 0) return;
    row[prefix + "_ms"] = 1e3 * seconds;
    row[prefix + "_gflops"] = flops / seconds / 1e9;
  };

  std::printf("Eigen SGEMM, square n x n x n\n");
  for (int n : {256, 512, 1024, 2048}) {
    RowMat a = RowMat::Random(n, n), b = RowMat::Random(n, n), c(n, n);
    const double s = median_seconds(repeats, [&] { c.noalias() = a * b; });
    byol::bench::Json row = {{"table", "gemm"}, {"name", "sgemm " + std::to_string(n)}, {"n", n}};
    timed(row, "median", s, 2.0 * n * n * n);
    row["peak_percent"] = 100 * 2.0 * n * n * n / s / 1e9 / peak;
    rows.push_back(row);
    std::printf("  n = %4d  %7.1f GFLOP/s  (%4.0f%% of peak)\n", n, 2.0 * n * n * n / s / 1e9,
                100 * 2.0 * n * n * n / s / 1e9 / peak);
  }

  const ConvShape shapes[] = {
      {"stem 3->64 3x3", 1, 32, 3, 64, 3, 1, 1},          {"layer1 64->64 3x3", 4, 32, 64, 64, 3, 1, 1},
      {"layer2 64->128 3x3/2", 1, 32, 64, 128, 3, 2, 1},  {"layer2 128->128 3x3", 3, 16, 128, 128, 3, 1, 1},
      {"layer2 down 1x1/2", 1, 32, 64, 128, 1, 2, 0},     {"layer3 128->256 3x3/2", 1, 16, 128, 256, 3, 2, 1},
      {"layer3 256->256 3x3", 3, 8, 256, 256, 3, 1, 1},   {"layer3 down 1x1/2", 1, 16, 128, 256, 1, 2, 0},
      {"layer4 256->512 3x3/2", 1, 8, 256, 512, 3, 2, 1}, {"layer4 512->512 3x3", 3, 4, 512, 512, 3, 1, 1},
      {"layer4 down 1x1/2", 1, 8, 256, 512, 1, 2, 0},
  };

  // Each shape through every CPU algorithm and the plain GEMM im2col reduces to, in one run. Winograd
  // applies to the 3x3 stride-1 shapes; elsewhere its column times the direct kernels again.
  const byol::cpu::ConvAlgorithm saved = byol::cpu::conv_algorithm();
  std::printf(
      "\nconv2d (NHWC, KRSC), GFLOP/s: im2col | oneDNN direct | oneDNN Winograd | GEMM-equivalent of "
      "im2col%s\n",
      onednn ? "" : "  (oneDNN: not in this build)");
  std::printf(
      "  (Winograd: effective rate, direct-convolution FLOPs / time, activation reorders included)\n");
  std::printf("  %-22s %-34s %-34s %-34s\n", "shape", "forward", "backward data", "backward filter");
  double im2col_time = 0, direct_time = 0, wino_time = 0, gemm_time = 0, total_flops = 0;
  std::vector<std::string> impls;
  for (const ConvShape& s : shapes) {
    byol::cpu::ConvGeom g{N, s.hw, s.hw, s.c, s.k, s.r, s.r, 0, 0, s.stride, s.pad};
    g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
    g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
    const int64_t M = N * g.P * g.Q, RSC = g.R * g.S * g.C;
    const double flops = 2.0 * M * g.K * RSC;
    std::vector<float> x = random_vec(N * g.H * g.W * g.C, gen), w = random_vec(g.K * RSC, gen);
    std::vector<float> y(M * g.K), dy = random_vec(M * g.K, gen), dx(x.size()), dw(w.size());
    auto time_convs = [&](byol::cpu::ConvAlgorithm a, double* t) {
      byol::cpu::set_conv_algorithm(a);
      t[0] = median_seconds(repeats, [&] { byol::cpu::conv2d_forward(x.data(), w.data(), y.data(), g); });
      t[1] = median_seconds(repeats,
                            [&] { byol::cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), g); });
      t[2] = median_seconds(repeats,
                            [&] { byol::cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), g); });
    };
    double t_im2col[3], t_direct[3] = {0, 0, 0}, t_wino[3] = {0, 0, 0};
    time_convs(byol::cpu::ConvAlgorithm::im2col, t_im2col);
    if (onednn) {
      time_convs(byol::cpu::ConvAlgorithm::onednn_direct, t_direct);
      time_convs(byol::cpu::ConvAlgorithm::onednn_winograd, t_wino);
      impls.push_back(std::string(s.name) + ": " + byol::cpu::onednn_conv2d_implementation(g));
    }
    RowMat col = RowMat::Random(M, RSC), W = RowMat::Random(g.K, RSC), Y(M, g.K), DY = RowMat::Random(M, g.K);
    RowMat DCOL(M, RSC), DW(g.K, RSC);
    double t_gemm[3] = {median_seconds(repeats, [&] { Y.noalias() = col * W.transpose(); }),
                        median_seconds(repeats, [&] { DCOL.noalias() = DY * W; }),
                        median_seconds(repeats, [&] { DW.noalias() = DY.transpose() * col; })};
    byol::bench::Json row = {{"table", "conv2d"},
                             {"name", s.name},
                             {"uses", s.count},
                             {"sizes",
                              {{"N", N},
                               {"H", g.H},
                               {"W", g.W},
                               {"C", g.C},
                               {"K", g.K},
                               {"R", g.R},
                               {"S", g.S},
                               {"stride", g.stride},
                               {"pad", g.pad}}}};
    const char* passes[] = {"forward", "backward_data", "backward_filter"};
    for (int i = 0; i < 3; ++i) {
      byol::bench::Json& pass = row[passes[i]] = byol::bench::Json::object();
      timed(pass, "im2col", t_im2col[i], flops);
      timed(pass, "onednn_direct", t_direct[i], flops);
      timed(pass, "onednn_winograd", t_wino[i], flops);
      timed(pass, "gemm_equivalent", t_gemm[i], flops);
    }
    rows.push_back(row);
    std::printf("  %-22s", s.name);
    auto rate = [&](double t) { return t > 0 ? flops / t / 1e9 : 0.0; };
    for (int i = 0; i < 3; ++i) {
      std::printf(" %6.1f | %6.1f | %6.1f | %6.1f ", rate(t_im2col[i]), rate(t_direct[i]), rate(t_wino[i]),
                  rate(t_gemm[i]));
      im2col_time += s.count * t_im2col[i];
      direct_time += s.count * t_direct[i];
      wino_time += s.count * t_wino[i];
      gemm_time += s.count * t_gemm[i];
      total_flops += s.count * flops;
    }
    std::printf("\n");
  }
  byol::cpu::set_conv_algorithm(saved);
  std::printf("  whole network (weighted by use), forward + both backwards:\n");
  std::printf(
      "    im2col          %6.1f GFLOP/s (%3.0f%% of peak; %.0f%% of its GEMM-equivalent, %.1f GFLOP/s), "
      "%.3f s "
      "per step\n",
      total_flops / im2col_time / 1e9, 100 * total_flops / im2col_time / 1e9 / peak,
      100 * gemm_time / im2col_time, total_flops / gemm_time / 1e9, im2col_time);
  auto network_row = [&](const char* name, double seconds) {
    byol::bench::Json row = {{"table", "conv2d_network"}, {"name", name}};
    timed(row, "step", seconds, total_flops);
    row["peak_percent"] = 100 * total_flops / seconds / 1e9 / peak;
    rows.push_back(row);
  };
  network_row("im2col", im2col_time);
  network_row("gemm_equivalent", gemm_time);
  if (onednn) {
    network_row("onednn_direct", direct_time);
    network_row("onednn_winograd", wino_time);
    std::printf("    oneDNN direct   %6.1f GFLOP/s (%3.0f%% of peak), %.3f s per step: %.2fx im2col\n",
                total_flops / direct_time / 1e9, 100 * total_flops / direct_time / 1e9 / peak, direct_time,
                im2col_time / direct_time);
    std::printf(
        "    oneDNN Winograd %6.1f GFLOP/s effective (%3.0f%% of peak), %.3f s per step: %.2fx im2col, "
        "%.2fx direct\n",
        total_flops / wino_time / 1e9, 100 * total_flops / wino_time / 1e9 / peak, wino_time,
        im2col_time / wino_time, direct_time / wino_time);
    std::printf(
        "  oneDNN's implementations with Winograd on (forward / backward data / backward weights):\n");
    for (const std::string& line : impls) std::printf("    %s\n", line.c_str());
    result["onednn_implementations"] = impls;
  }
  std::printf("  (per step of batch %lld: one forward and both backwards of each convolution, once)\n",
              static_cast<long long>(N));

  if (onednn && !byol::cpu::bf16_kernels_available()) {
    std::printf(
        "\nconv2d with bf16 products: skipped, this CPU has no oneDNN bf16 kernels (oneDNN 2.6 needs "
        "AVX-512; "
        "bf16 passes run as float32 convolutions on rounded copies here)\n");
    result["conv2d_bf16_skipped"] = "this CPU has no oneDNN bf16 kernels";
  } else if (onednn) {
    // bf16 products (train.precision = "bf16"): each pass on oneDNN's bf16 convolution kernels and as
    // im2col + oneDNN's bf16 matmul, and what cpu::bf16_matmul_pass picks. A backward-filter pass that
    // bf16_backward_filter keeps in float32 is the same in both columns (no matmul: "-").
    std::printf(
        "\nconv2d with bf16 products, ms per pass: oneDNN bf16 kernels | im2col + bf16 matmul (* = the "
        "choice shipped)\n");
    std::printf("  %-22s %-22s %-22s %-22s\n", "shape", "forward", "backward data", "backward filter");
    double t_fp32 = 0, t_kernels = 0, t_shipped = 0;
    for (const ConvShape& s : shapes) {
      byol::cpu::ConvGeom g{N, s.hw, s.hw, s.c, s.k, s.r, s.r, 0, 0, s.stride, s.pad};
      g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
      g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
      const int64_t M = N * g.P * g.Q, RSC = g.R * g.S * g.C;
      std::vector<float> x = random_vec(N * g.H * g.W * g.C, gen), w = random_vec(g.K * RSC, gen);
      std::vector<float> y(M * g.K), dy = random_vec(M * g.K, gen), dx(x.size()), dw(w.size());
      byol::cpu::set_conv_algorithm(byol::cpu::ConvAlgorithm::onednn_winograd);
      auto time_passes = [&](const byol::cpu::ConvGeom& h, double* t) {
        t[0] = median_seconds(repeats, [&] { byol::cpu::conv2d_forward(x.data(), w.data(), y.data(), h); });
        t[1] = median_seconds(repeats,
                              [&] { byol::cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), h); });
        t[2] = median_seconds(repeats,
                              [&] { byol::cpu::conv2d_backward_filter(dy.data(), x.data(), dw.data(), h); });
      };
      double fp32[3], kernels[3], matmul[3] = {0, 0, 0};
      time_passes(g, fp32);
      g.bf16 = true;
      byol::cpu::set_bf16_matmul_enabled(false);
      time_passes(g, kernels);
      byol::cpu::set_bf16_matmul_enabled(true);
      matmul[0] = median_seconds(
          repeats, [&] { byol::cpu::matmul_bf16_conv2d_forward(x.data(), w.data(), y.data(), g); });
      matmul[1] = median_seconds(
          repeats, [&] { byol::cpu::matmul_bf16_conv2d_backward_data(dy.data(), w.data(), dx.data(), g); });
      if (byol::cpu::bf16_backward_filter(g))
        matmul[2] = median_seconds(repeats, [&] {
          byol::cpu::matmul_bf16_conv2d_backward_filter(dy.data(), x.data(), dw.data(), g);
        });
      const byol::cpu::ConvPass pass_of[] = {byol::cpu::ConvPass::forward, byol::cpu::ConvPass::backward_data,
                                             byol::cpu::ConvPass::backward_filter};
      const char* names[] = {"forward", "backward_data", "backward_filter"};
      byol::bench::Json row = {{"table", "conv2d_bf16"}, {"name", s.name}, {"uses", s.count}};
      std::printf("  %-22s", s.name);
      for (int i = 0; i < 3; ++i) {
        const bool picked = byol::cpu::bf16_matmul_pass(g, pass_of[i]);
        const double shipped = picked ? matmul[i] : kernels[i];
        t_fp32 += s.count * fp32[i], t_kernels += s.count * kernels[i], t_shipped += s.count * shipped;
        char m[16] = "     -";
        if (matmul[i] > 0) std::snprintf(m, sizeof m, "%6.2f", 1e3 * matmul[i]);
        std::printf(" %6.2f%s | %s%s   ", 1e3 * kernels[i], picked ? " " : "*", m, picked ? "*" : " ");
        byol::bench::Json& pass = row[names[i]] = byol::bench::Json::object();
        pass["fp32_ms"] = 1e3 * fp32[i];
        pass["bf16_kernels_ms"] = 1e3 * kernels[i];
        if (matmul[i] > 0) pass["bf16_matmul_ms"] = 1e3 * matmul[i];
        pass["matmul_shipped"] = picked;
      }
      std::printf("\n");
      rows.push_back(row);
    }
    byol::cpu::set_conv_algorithm(saved);
    std::printf(
        "  whole network (weighted by use), forward + both backwards: fp32 (oneDNN, Winograd) %.1f ms, bf16 "
        "kernels only %.1f ms, bf16 as shipped %.1f ms (%.2fx fp32)\n",
        1e3 * t_fp32, 1e3 * t_kernels, 1e3 * t_shipped, t_fp32 / t_shipped);
    rows.push_back({{"table", "conv2d_bf16_network"},
                    {"fp32_ms", 1e3 * t_fp32},
                    {"bf16_kernels_ms", 1e3 * t_kernels},
                    {"bf16_shipped_ms", 1e3 * t_shipped}});
  }

  std::printf("\nbatch_norm (training: sums + normalise; backward: sums + dx), GB/s of compulsory traffic\n");
  std::printf("  (copy = a parallel copy of the same number of bytes, read + write)\n");
  // Plain variables, not a structured binding: the timing lambdas capture c (clang before 16 cannot).
  for (const auto& shape : {std::pair<int64_t, int64_t>{32, 64}, {16, 128}, {8, 256}, {4, 512}}) {
    const int64_t hw = shape.first, c = shape.second;
    const int64_t M = N * hw * hw;
    std::vector<float> x = random_vec(M * c, gen), y(M * c), dy = random_vec(M * c, gen), dx(M * c);
    std::vector<float> mean(c, 0.1f), invstd(c, 1.2f), gamma(c, 1.f), beta(c, 0.f), dgamma(c), dbeta(c);
    std::vector<double> stats(2 * c + 1), sums(2 * c);
    const double tf = median_seconds(repeats, [&] {
      byol::cpu::batch_norm_partial_sums(x.data(), M, c, stats.data());
      byol::cpu::batch_norm_apply(x.data(), mean.data(), invstd.data(), gamma.data(), beta.data(), y.data(),
                                  M, c);
    });
    const double tb = median_seconds(repeats, [&] {
      const double count = static_cast<double>(M);
      byol::cpu::batch_norm_backward_sums(dy.data(), x.data(), mean.data(), invstd.data(), M, c, sums.data(),
                                          dbeta.data(), dgamma.data());
      byol::cpu::batch_norm_backward_dx(dy.data(), x.data(), mean.data(), invstd.data(), gamma.data(),
                                        sums.data(), &count, dx.data(), M, c);
    });
    const double bytes = 4.0 * M * c, copy = copy_gbs(static_cast<size_t>(bytes), repeats);
    // forward: read x twice, write y once; backward: read dy and x twice, write dx once.
    std::printf(
        "  [%lld, %2lld, %2lld, %3lld] %5.1f MB  copy %6.1f GB/s  forward %6.1f GB/s (%3.0f%%)  "
        "backward %6.1f GB/s (%3.0f%%)\n",
        static_cast<long long>(N), static_cast<long long>(hw), static_cast<long long>(hw),
        static_cast<long long>(c), bytes / 1e6, copy, 3 * bytes / tf / 1e9, 100 * 3 * bytes / tf / 1e9 / copy,
        5 * bytes / tb / 1e9, 100 * 5 * bytes / tb / 1e9 / copy);
    rows.push_back({{"table", "batch_norm"},
                    {"name", "batch_norm [" + std::to_string(N) + ", " + std::to_string(hw) + ", " +
                                 std::to_string(hw) + ", " + std::to_string(c) + "]"},
                    {"sizes", {{"N", N}, {"H", hw}, {"W", hw}, {"C", c}}},
                    {"megabytes", bytes / 1e6},
                    {"copy_gb_s", copy},
                    {"forward_ms", 1e3 * tf},
                    {"forward_gb_s", 3 * bytes / tf / 1e9},
                    {"forward_copy_percent", 100 * 3 * bytes / tf / 1e9 / copy},
                    {"backward_ms", 1e3 * tb},
                    {"backward_gb_s", 5 * bytes / tb / 1e9},
                    {"backward_copy_percent", 100 * 5 * bytes / tb / 1e9 / copy}});
  }
  if (!json_path.empty()) {
    try {
      byol::bench::write_json_atomically(json_path, result);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cpu_ops_bench: %s\n", e.what());
      return 1;
    }
  }
  return 0;
}
