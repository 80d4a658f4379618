// Kernel lab: the elementwise kernels, full sums and casts of engine/cuda/elementwise.cu and the pooling
// kernels of engine/cuda/pool.cu — the shipping launchers, validated against the CPU backend's own functions
// (engine/cpu/cpu_backend.h, which share engine/math/elementwise.h with the kernels), the CPU cast
// (Tensor::to(DType)) or a CPU loop, then timed at ResNet-50 sizes.
//
//   build: cmake --build build-cuda --target elementwise_lab
//   run:   build-cuda/benchmarks/elementwise_lab [--json FILE]
//          (elementwise ops and casts on a [128, 56, 56, 256] activation, the sum over 35e6 floats
//          (ResNet-50 + BYOL's heads), column_sums and add_row_bias on [4096, 4096], max pool 3x3/2 pad 1
//          on [128, 112, 112, 64], global average pool on [128, 7, 7, 2048]; all float32)
//
// Versions:
//   1. one grid-stride launch per op, scalar loads/stores, one thread per output element (pool forward,
//      column_sums) or per input element (max-pool backward, a gather); sum is CUB's device reduction in
//      double. On an H200 (2026-12-04): the float32 maps 91-98 % of the copy bandwidth, the casts 60 %,
//      column_sums 3 % and add_row_bias 61 % at [4096, 4096]; max pool forward 0.841 ms (17.8 %), backward
//      1.834 ms (8.1 %), global average pool backward 0.045 ms (28.3 %).
//   2. pools: the same with 32-bit index arithmetic where the indices fit (validated with the 64-bit
//      kernels too): 0.503 ms (29.7 %), 1.382 ms (10.8 %), 0.033 ms (38.4 %) on the H200.
//      Maps and casts: packs of 16 bytes (engine/cuda/pack.cuh) where every pointer is aligned, the last
//      n % V elements one by one; column_sums on blocks of 32 columns x 32 row lanes; add_row_bias in packs
//      of columns with 32-bit indices. Version 1 of the maps and casts runs through
//      force_unpacked_elementwise, of column_sums and add_row_bias as copies in this file.
//   3. max and global average pool in packs of 16 bytes of channels where C divides: the index arithmetic
//      and the max-pool backward's window search once per pack, 16-byte accesses (force_unpacked_pools gives
//      version 2; for the global average pool forward, version 1).
// Every version that a switch selects is validated, and timed next to the one that ships.
// Validation, float32 and float64 (casts: all nine pairs of f32, f64, bf16): n = 0, 1, 3, 5, 1001, 4099
// and 4194319 (more than one grid of kMaxBlocks x kThreads threads element by element); the packed kernels'
// second pass over the grid at n = 16777259 (more than 8 grids) for a map, add_inplace, two casts, bf16 maps
// and a max pool of 2.4M packs (validate_wrap); matrices [0, 5], [5, 0], [1, 1], [3, 7], [7, 3],
// [33, 1001], [4096, 256], [3, 2097153] (add_row_bias with 32- and 64-bit indices); max pools with C = 1,
// 3, 5, 7 (element by element) and 4, 8, 16, 24, 64 (in packs where C divides), non-square
// images, kernel 1/2/3, stride 1/2/3 (windows that overlap, and stride 3 with kernel 2, which leaves
// inputs in no window), pad 0/1, inputs on a coarse grid (many ties) with a NaN every 101 values; global
// average pools [N, HW, C] = [1, 1, 1], [2, 35, 3], [3, 49, 7], [5, 9, 2048], [64, 49, 2048]. Every
// output buffer is poisoned (a NaN with a payload no kernel writes) before the launch, so an element left
// unwritten fails; the 7 poisoned elements past n of every output must stay bitwise as they were (inputs
// end in 7 NaNs of another payload, so a kernel that reads past n and passes what it read on shows too).
// Tolerances:
//   - bitwise (a NaN matches any NaN but the poison: a conversion on the GPU may canonicalise a NaN's
//     payload) for relu forward/backward, add, add_inplace, scale, fill_from_scalar, add_row_bias, casts,
//     max pool forward (values and argmax) and backward, global average pool forward and backward: the
//     same formula in the same type and order on both sides (a channel's HW values added one after
//     another, in each version), with no multiply-add to contract;
//   - column_sums: |got - want| <= eps_T |want| + 2 rows 2^-53 sum|x| per column: both sides add in double,
//     in different orders (the GPU in 32 row lanes), then round to T once;
//   - sum: |got - want| <= eps_T |want| + 2 n 2^-53 |factor| sum|x|: CUB adds in another order than the CPU,
//     in double (the recursive-summation bound (n - 1) 2^-53 sum|x| for each side), then both round the
//     scaled double to T once (eps_T = 2^-23 for float covers both roundings);
// Bytes counted (compulsory traffic, float32): relu forward and scale 2 n floats; relu backward, add and
// add_inplace 3 n; fill_from_scalar n; sum n; casts n (source) + n (destination) elements at their sizes;
// column_sums rows cols + cols; add_row_bias 2 rows cols + cols; max pool forward N H W C + 2 N P Q C (y
// and the int32 argmax), backward 2 N P Q C + N H W C; global average pool N HW C + N C either way.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "benchmarks/lab_main.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/elementwise.cuh"
#include "engine/cuda/launch.h"
#include "engine/cuda/pool.cuh"
#include "engine/cuda/timing.h"
#include "engine/dtype.h"
#include "engine/tensor.h"

using namespace byol;

namespace {

constexpr int64_t kTail = 7;  // poisoned elements past n in every validation buffer
constexpr int64_t kSizes[] = {0, 1, 3, 5, 1001, 4099, 4194319};
constexpr std::pair<int64_t, int64_t> kMatrices[] = {{0, 5}, {5, 0},     {1, 1},      {3, 7},
                                                     {7, 3}, {33, 1001}, {4096, 256}, {3, 2097153}};
struct MaxPoolCase {
  int64_t N, H, W, C;
  int kernel, stride, pad;
};
// C = 4, 8, 16, 24 and 64 take the packed kernels (16 bytes of channels: 4 floats, 2 doubles, 8 bf16) where
// they divide, the odd ones the scalar kernels.
constexpr MaxPoolCase kMaxPools[] = {
    {1, 1, 1, 1, 1, 1, 0},  {2, 5, 7, 3, 3, 2, 1},  {3, 9, 6, 7, 3, 2, 1}, {2, 8, 8, 5, 2, 2, 0},
    {1, 7, 5, 7, 3, 1, 1},  {2, 7, 10, 3, 2, 3, 0}, {2, 9, 6, 8, 3, 2, 1}, {2, 7, 10, 16, 2, 3, 0},
    {1, 7, 5, 24, 3, 1, 1}, {2, 8, 8, 4, 2, 2, 0},  {1, 1, 1, 8, 1, 1, 0}, {4, 112, 112, 64, 3, 2, 1}};
struct AvgPoolCase {
  int64_t N, HW, C;
};
constexpr AvgPoolCase kAvgPools[] = {{1, 1, 1}, {2, 35, 3}, {3, 49, 7}, {5, 9, 2048}, {64, 49, 2048}};

// Timing shapes (float32).
constexpr int64_t kAct = int64_t(128) * 56 * 56 * 256;  // a ResNet-50 stage-1 activation
constexpr int64_t kSum = 35000000;                      // ResNet-50 + projector + predictor parameters
constexpr int64_t kRows = 4096, kCols = 4096;           // the projector's hidden layer at batch 4096
constexpr int64_t kPoolN = 128, kPoolH = 112, kPoolW = 112, kPoolC = 64, kPoolP = 56, kPoolQ = 56;
constexpr int64_t kGapN = 128, kGapHW = 7 * 7, kGapC = 2048;

// --- element bits: poison, NaN, comparison ----------------------------------------------------------------

template <class T>
using Bits =
    std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;

template <class T>
Bits<T> bits(T v) {
  return std::bit_cast<Bits<T>>(v);
}

// Quiet NaNs with payloads no kernel writes (for int32, a value no argmax takes): `poison` fills outputs
// and the tails of every buffer a kernel writes; `fence` the tails of inputs, so a kernel that reads past
// n and writes what it read (even a NaN passed through) is seen in the output's tail.
template <class T>
T nan_pattern(uint16_t b16, uint32_t b32, uint64_t b64) {
  if constexpr (sizeof(T) == 2) {
    return std::bit_cast<T>(b16);
  } else if constexpr (sizeof(T) == 4) {
    return std::bit_cast<T>(b32);
  } else {
    return std::bit_cast<T>(b64);
  }
}
template <class T>
T poison() {
  return nan_pattern<T>(0x7fed, 0x7fc0deadu, 0x7ff80000c0dedeadull);
}
template <class T>
T fence() {
  return nan_pattern<T>(0x7fe5, 0x7fc0beefu, 0x7ff80000c0debeefull);
}

template <class T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16_to_float(v);
  } else {
    return static_cast<double>(v);
  }
}

template <class T>
bool is_nan(T v) {
  if constexpr (std::is_integral_v<T>) {
    return false;
  } else {
    return std::isnan(as_double(v));
  }
}

// Equal bits, or both NaN where the GPU's is not the poison.
template <class T>
bool same_value(T got, T want) {
  return bits(got) == bits(want) || (is_nan(got) && is_nan(want) && bits(got) != bits(poison<T>()));
}

// --- buffers -----------------------------------------------------------------------------------------------

template <class T>
std::vector<T> random(int64_t n, std::mt19937_64& gen, double mean = 0.0, double stddev = 1.0) {
  std::normal_distribution<double> d(mean, stddev);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(d(gen));
  return v;
}

// The values followed by kTail elements `tail`, on the GPU.
template <class T>
Tensor upload(std::vector<T> v, T tail = fence<T>()) {
  v.resize(v.size() + kTail, tail);
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}).to(Device::cuda());
}

template <class T>
Tensor poisoned(int64_t n) {
  return upload(std::vector<T>(n, poison<T>()), poison<T>());
}

// --- one launcher's validation over all cases
// ---------------------------------------------------------------

struct Check {
  const char* name;
  bool bitwise;             // every element as the CPU's; else within the per-element tolerance
  int64_t cases = 0;        // buffers compared
  int64_t not_bitwise = 0;  // elements that differ from the CPU's (see same_value)
  int64_t beyond = 0;       // elements off by more than their tolerance (or NaN)
  int64_t tail = 0;         // poisoned elements past n that the GPU overwrote
  double worst = 0;         // max |error| / tolerance of the finite errors

  template <class T>
  void compare(const Tensor& got_gpu, const std::vector<T>& want, const std::vector<double>& tol = {}) {
    const std::vector<T> got = got_gpu.to_vector<T>();
    const int64_t n = static_cast<int64_t>(want.size());
    ++cases;
    for (int64_t i = 0; i < n; ++i) {
      not_bitwise += !same_value(got[i], want[i]);
      if (bitwise) continue;
      const double e = std::abs(as_double(got[i]) - as_double(want[i]));
      if (!(e <= tol[i])) {
        ++beyond;
      } else if (e > 0) {
        worst = std::max(worst, e / tol[i]);
      }
    }
    for (int64_t i = n; i < n + kTail; ++i) tail += bits(got[i]) != bits(poison<T>());
  }

  bool report(lab::Report& report) const {
    const bool ok = tail == 0 && (bitwise ? not_bitwise == 0 : beyond == 0);
    lab::Json figures = {{"bitwise", bitwise}, {"cases", cases}, {"not_bitwise", not_bitwise}};
    if (!bitwise) figures.update({{"max_error_of_tolerance", worst}, {"beyond_tolerance", beyond}});
    figures["tail_written"] = tail;
    report.validated(name, ok, figures);
    if (bitwise) {
      std::printf(
          "validation vs CPU: %-28s %3lld cases, bitwise: %lld differ, %lld tail elements written: %s\n",
          name, (long long)cases, (long long)not_bitwise, (long long)tail, ok ? "OK" : "FAILED");
    } else {
      std::printf(
          "validation vs CPU: %-28s %3lld cases, max error %.1e of the tolerance, %lld beyond it, %lld not "
          "bitwise, %lld tail elements written: %s\n",
          name, (long long)cases, worst, (long long)beyond, (long long)not_bitwise, (long long)tail,
          ok ? "OK" : "FAILED");
    }
    return ok;
  }
};

struct Checks {
  Check relu_forward{"relu_forward", true}, relu_backward{"relu_backward", true}, add{"add", true},
      add_inplace{"add_inplace", true}, scale{"scale", true}, fill{"fill_from_scalar", true},
      sum{"sum", false}, column_sums{"column_sums", false}, add_row_bias{"add_row_bias", true},
      max_pool_forward{"max_pool2d_forward (+argmax)", true}, max_pool_backward{"max_pool2d_backward", true},
      avg_pool_forward{"global_avg_pool_forward", true}, avg_pool_backward{"global_avg_pool_backward", true},
      cast{"cast (f32, f64, bf16 pairs)", true}, bf16_relu{"bf16 relu forward + backward", true},
      bf16_add{"bf16 add + add_inplace", true}, bf16_max_pool{"bf16 max_pool2d fwd (+argmax), bwd", true},
      bf16_avg_pool{"bf16 global_avg_pool fwd, bwd", true},
      misaligned{"maps and casts off 16-byte alignment", true};

  bool report(lab::Report& report) const {
    bool ok = true;
    for (const Check* c :
         {&relu_forward, &relu_backward, &add, &add_inplace, &scale, &fill, &sum, &column_sums, &add_row_bias,
          &max_pool_forward, &max_pool_backward, &avg_pool_forward, &avg_pool_backward, &cast, &bf16_relu,
          &bf16_add, &bf16_max_pool, &bf16_avg_pool, &misaligned})
      ok = c->report(report) && ok;
    return ok;
  }
};

template <class T>
void validate_elementwise(Checks& c, std::mt19937_64& gen) {
  cudaStream_t s = cuda::compute_stream();
  constexpr double kAlpha = 0.3, kFactor = 1.0 / 3.0;
  for (const int64_t n : kSizes) {
    std::vector<T> x = random<T>(n, gen), b = random<T>(n, gen), y(n), want(n);
    for (int64_t i = 0; i < n; i += 7) x[i] = i % 14 ? T(-0.0) : T(0);  // relu's boundary, both zeros
    cpu::relu_forward(x.data(), y.data(), n);
    const Tensor dx = upload(x), db = upload(b), dy = upload(y);
    {
      const Tensor out = poisoned<T>(n);
      kernels::relu_forward(dx.data<T>(), out.data<T>(), n, s);
      c.relu_forward.compare(out, y);
    }
    {
      const Tensor out = poisoned<T>(n);
      kernels::relu_backward(dy.data<T>(), db.data<T>(), out.data<T>(), n, s);
      cpu::relu_backward(y.data(), b.data(), want.data(), n);
      c.relu_backward.compare(out, want);
    }
    {
      const Tensor out = poisoned<T>(n);
      kernels::add(dx.data<T>(), db.data<T>(), out.data<T>(), n, s);
      cpu::add(x.data(), b.data(), want.data(), n);
      c.add.compare(out, want);
    }
    {
      const Tensor acc = upload(b, poison<T>());
      kernels::add_inplace(acc.data<T>(), dx.data<T>(), n, s);
      want = b;
      cpu::add_inplace(want.data(), x.data(), n);
      c.add_inplace.compare(acc, want);
    }
    {
      const Tensor out = poisoned<T>(n);
      kernels::scale(dx.data<T>(), kAlpha, out.data<T>(), n, s);
      cpu::scale(x.data(), kAlpha, want.data(), n);
      c.scale.compare(out, want);
    }
    {
      const T scalar = T(-1.7);
      const Tensor out = poisoned<T>(n), dscalar = upload(std::vector<T>{scalar});
      kernels::fill_from_scalar(out.data<T>(), dscalar.data<T>(), kFactor, n, s);
      cpu::fill_from_scalar(want.data(), &scalar, kFactor, n);
      c.fill.compare(out, want);
    }
    {
      const std::vector<T> v = random<T>(n, gen, 0.5);  // a mean away from zero: a meaningful relative error
      const double factor = n > 0 ? 1.0 / static_cast<double>(n) : 1.0;  // a mean, as ops::mean asks
      const Tensor dv = upload(v), out = poisoned<T>(1);
      kernels::sum(dv.data<T>(), n, factor, out.data<T>(), s);
      double abs_sum = 0;
      for (const T e : v) abs_sum += std::abs(static_cast<double>(e));
      T total;
      cpu::sum(v.data(), n, factor, &total);
      const double tol = std::numeric_limits<T>::epsilon() * std::abs(static_cast<double>(total)) +
                         2.0 * static_cast<double>(n) * std::ldexp(1.0, -53) * factor * abs_sum;
      c.sum.compare(out, std::vector<T>{total}, {tol});
    }
  }
  for (const auto& [rows, cols] : kMatrices) {
    const std::vector<T> x = random<T>(rows * cols, gen), bias = random<T>(cols, gen);
    const Tensor dx = upload(x), dbias = upload(bias);
    {
      const Tensor out = poisoned<T>(cols);
      kernels::column_sums(dx.data<T>(), rows, cols, out.data<T>(), s);
      std::vector<T> want(cols);
      std::vector<double> tol(cols);
      for (int64_t j = 0; j < cols; ++j) {
        double acc = 0, abs_sum = 0;
        for (int64_t r = 0; r < rows; ++r) {
          acc += static_cast<double>(x[r * cols + j]);
          abs_sum += std::abs(static_cast<double>(x[r * cols + j]));
        }
        want[j] = static_cast<T>(acc);
        // the GPU adds the rows in another order, in double: each side within (rows - 1) 2^-53 sum|x| of
        // the exact sum, then one rounding to T each
        tol[j] = std::numeric_limits<T>::epsilon() * std::abs(static_cast<double>(want[j])) +
                 2.0 * static_cast<double>(rows) * std::ldexp(1.0, -53) * abs_sum;
      }
      c.column_sums.compare(out, want, tol);
    }
    std::vector<T> want = x;
    for (int64_t i = 0; i < rows * cols; ++i) want[i] += bias[i % cols];
    for (bool wide : {false, true}) {  // the 32-bit and the 64-bit index kernels
      kernels::force_64bit_elementwise_indices(wide);
      const Tensor acc = upload(x, poison<T>());
      kernels::add_row_bias(acc.data<T>(), dbias.data<T>(), rows, cols, s);
      c.add_row_bias.compare(acc, want);
    }
    kernels::force_64bit_elementwise_indices(false);
  }
}

template <class T>
void validate_pools(Checks& c, std::mt19937_64& gen) {
  cudaStream_t s = cuda::compute_stream();
  for (const MaxPoolCase& m : kMaxPools) {
    const int64_t P = (m.H + 2 * m.pad - m.kernel) / m.stride + 1,
                  Q = (m.W + 2 * m.pad - m.kernel) / m.stride + 1;
    const int64_t in = m.N * m.H * m.W * m.C, out = m.N * P * Q * m.C;
    std::vector<T> x = random<T>(in, gen);
    for (T& v : x) v = std::round(v * T(2)) / T(2);  // a coarse grid: many ties within a window
    for (int64_t i = 50; i < in; i += 101) x[i] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> y(out);
    std::vector<int32_t> arg(out);
    cpu::max_pool2d_forward(x.data(), y.data(), arg.data(), m.N, m.H, m.W, m.C, P, Q, m.kernel, m.stride,
                            m.pad);
    {
      const Tensor dx = upload(x), dy = poisoned<T>(out), darg = poisoned<int32_t>(out);
      kernels::max_pool2d_forward(dx.data<T>(), dy.data<T>(), darg.data<int32_t>(), m.N, m.H, m.W, m.C, P, Q,
                                  m.kernel, m.stride, m.pad, s);
      c.max_pool_forward.compare(dy, y);
      c.max_pool_forward.compare(darg, arg);
    }
    {
      // The CPU's argmax for both sides, so backward is checked on its own.
      const std::vector<T> g = random<T>(out, gen);
      std::vector<T> want(in);
      cpu::max_pool2d_backward(g.data(), arg.data(), want.data(), m.N, m.H, m.W, m.C, P, Q);
      const Tensor dg = upload(g), darg = upload(arg), dx = poisoned<T>(in);
      kernels::max_pool2d_backward(dg.data<T>(), darg.data<int32_t>(), dx.data<T>(), m.N, m.H, m.W, m.C, P, Q,
                                   m.kernel, m.stride, m.pad, s);
      c.max_pool_backward.compare(dx, want);
    }
  }
  for (const AvgPoolCase& a : kAvgPools) {
    const int64_t in = a.N * a.HW * a.C, out = a.N * a.C;
    {
      const std::vector<T> x = random<T>(in, gen, 0.5);
      std::vector<T> want(out);
      cpu::global_avg_pool_forward(x.data(), want.data(), a.N, a.HW, a.C);
      const Tensor dx = upload(x), dy = poisoned<T>(out);
      kernels::global_avg_pool_forward(dx.data<T>(), dy.data<T>(), a.N, a.HW, a.C, s);
      c.avg_pool_forward.compare(dy, want);
    }
    {
      const std::vector<T> g = random<T>(out, gen);
      std::vector<T> want(in);
      cpu::global_avg_pool_backward(g.data(), want.data(), a.N, a.HW, a.C);
      const Tensor dg = upload(g), dx = poisoned<T>(in);
      kernels::global_avg_pool_backward(dg.data<T>(), dx.data<T>(), a.N, a.HW, a.C, s);
      c.avg_pool_backward.compare(dx, want);
    }
  }
}

// bf16 activations (issue 17): relu, add, add_inplace, max pool and global average pool on bf16 rows against
// the CPU backend's bf16 functions, bitwise: both widen to float, run the same float formula in the same
// order and round once (nearest even); the pools' NaNs, ties and window cases are the float32 ones.
std::vector<bf16> random_bf16(int64_t n, std::mt19937_64& gen, double mean = 0.0) {
  std::normal_distribution<float> d(static_cast<float>(mean), 1.0f);
  std::vector<bf16> v(n);
  for (bf16& x : v) x = float_to_bf16(d(gen));
  return v;
}

void validate_bf16(Checks& c, std::mt19937_64& gen) {
  cudaStream_t s = cuda::compute_stream();
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(4194319)}) {
    const std::vector<bf16> a = random_bf16(n, gen), b = random_bf16(n, gen);
    std::vector<bf16> want(n), want_back(n), want_add(n), want_inplace = a;
    cpu::relu_forward(a.data(), want.data(), n);
    cpu::relu_backward(want.data(), b.data(), want_back.data(), n);
    cpu::add(a.data(), b.data(), want_add.data(), n);
    cpu::add_inplace(want_inplace.data(), b.data(), n);
    const Tensor da = upload(a), db = upload(b), dy = poisoned<bf16>(n), dx = poisoned<bf16>(n),
                 dsum = poisoned<bf16>(n), dinplace = upload(a, poison<bf16>());
    kernels::relu_forward(da.data<bf16>(), dy.data<bf16>(), n, s);
    kernels::relu_backward(dy.data<bf16>(), db.data<bf16>(), dx.data<bf16>(), n, s);
    kernels::add(da.data<bf16>(), db.data<bf16>(), dsum.data<bf16>(), n, s);
    kernels::add_inplace(dinplace.data<bf16>(), db.data<bf16>(), n, s);
    c.bf16_relu.compare(dy, want);
    c.bf16_relu.compare(dx, want_back);
    c.bf16_add.compare(dsum, want_add);
    c.bf16_add.compare(dinplace, want_inplace);
  }
  for (const MaxPoolCase& m : kMaxPools) {
    const int64_t P = (m.H + 2 * m.pad - m.kernel) / m.stride + 1,
                  Q = (m.W + 2 * m.pad - m.kernel) / m.stride + 1;
    const int64_t in = m.N * m.H * m.W * m.C, out = m.N * P * Q * m.C;
    std::vector<bf16> x = random_bf16(in, gen);
    for (bf16& v : x) v = float_to_bf16(std::round(bf16_to_float(v) * 2.0f) / 2.0f);  // ties
    for (int64_t i = 50; i < in; i += 101) x[i] = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
    std::vector<bf16> y(out);
    std::vector<int32_t> arg(out);
    cpu::max_pool2d_forward(x.data(), y.data(), arg.data(), m.N, m.H, m.W, m.C, P, Q, m.kernel, m.stride,
                            m.pad);
    const Tensor dx = upload(x), dy = poisoned<bf16>(out), darg = poisoned<int32_t>(out);
    kernels::max_pool2d_forward(dx.data<bf16>(), dy.data<bf16>(), darg.data<int32_t>(), m.N, m.H, m.W, m.C, P,
                                Q, m.kernel, m.stride, m.pad, s);
    c.bf16_max_pool.compare(dy, y);
    c.bf16_max_pool.compare(darg, arg);
    const std::vector<bf16> g = random_bf16(out, gen);
    std::vector<bf16> want(in);
    cpu::max_pool2d_backward(g.data(), arg.data(), want.data(), m.N, m.H, m.W, m.C, P, Q);
    const Tensor dg = upload(g), dargs = upload(arg), dgx = poisoned<bf16>(in);
    kernels::max_pool2d_backward(dg.data<bf16>(), dargs.data<int32_t>(), dgx.data<bf16>(), m.N, m.H, m.W, m.C,
                                 P, Q, m.kernel, m.stride, m.pad, s);
    c.bf16_max_pool.compare(dgx, want);
  }
  for (const AvgPoolCase& a : kAvgPools) {
    const int64_t in = a.N * a.HW * a.C, out = a.N * a.C;
    const std::vector<bf16> x = random_bf16(in, gen, 0.5), g = random_bf16(out, gen);
    std::vector<bf16> want(out), want_back(in);
    cpu::global_avg_pool_forward(x.data(), want.data(), a.N, a.HW, a.C);
    cpu::global_avg_pool_backward(g.data(), want_back.data(), a.N, a.HW, a.C);
    const Tensor dx = upload(x), dy = poisoned<bf16>(out), dg = upload(g), dgx = poisoned<bf16>(in);
    kernels::global_avg_pool_forward(dx.data<bf16>(), dy.data<bf16>(), a.N, a.HW, a.C, s);
    kernels::global_avg_pool_backward(dg.data<bf16>(), dgx.data<bf16>(), a.N, a.HW, a.C, s);
    c.bf16_avg_pool.compare(dy, want);
    c.bf16_avg_pool.compare(dgx, want_back);
  }
}

// The packed launchers on pointers one element past a 16-byte boundary (a view that starts inside its
// storage), which must take the element-by-element kernels: a packed access there would fault or read
// the wrong elements. Element 0 of each output is left poisoned.
template <class T>
void validate_misaligned(Check& c, std::mt19937_64& gen) {
  cudaStream_t s = cuda::compute_stream();
  for (const int64_t n : {int64_t(2), int64_t(1001), int64_t(4099)}) {
    const std::vector<T> x = random<T>(n, gen), b = random<T>(n, gen);
    const Tensor dx = upload(x), db = upload(b);
    const int64_t m = n - 1;  // elements [1, n)
    std::vector<T> want(n, poison<T>());
    {
      const Tensor out = poisoned<T>(n);
      kernels::relu_forward(dx.data<T>() + 1, out.data<T>() + 1, m, s);
      cpu::relu_forward(x.data() + 1, want.data() + 1, m);
      c.compare(out, want);
    }
    {
      const Tensor out = poisoned<T>(n);
      kernels::add(dx.data<T>() + 1, db.data<T>() + 1, out.data<T>() + 1, m, s);
      cpu::add(x.data() + 1, b.data() + 1, want.data() + 1, m);
      c.compare(out, want);
    }
    {
      const Tensor acc = upload(b, poison<T>());
      kernels::add_inplace(acc.data<T>() + 1, dx.data<T>() + 1, m, s);
      std::vector<T> w = b;
      cpu::add_inplace(w.data() + 1, x.data() + 1, m);
      c.compare(acc, w);
    }
    {
      const Tensor out = poisoned<bf16>(n);
      kernels::cast(dx.data<T>() + 1, static_cast<int>(dtype_of<T>::value), out.data<bf16>() + 1,
                    static_cast<int>(DType::bf16), m, s);
      std::vector<bf16> w(n, poison<bf16>());
      const std::vector<bf16> rounded = Tensor::from_vector(std::vector<T>(x.begin() + 1, x.end()), {m})
                                            .to(DType::bf16)
                                            .template to_vector<bf16>();
      std::copy(rounded.begin(), rounded.end(), w.begin() + 1);
      c.compare(out, w);
    }
  }
}

// One cast S -> D of `values` (first cast to S on the CPU) against the CPU's cast (Tensor::to).
template <class S, class D>
void validate_cast(Check& c, const std::vector<double>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  const Tensor src = Tensor::from_vector(values, {n}).to(dtype_of<S>::value);
  const std::vector<D> want = src.to(dtype_of<D>::value).template to_vector<D>();
  const Tensor dsrc = upload(src.to_vector<S>()), dst = poisoned<D>(n);
  kernels::cast(dsrc.raw_data(), static_cast<int>(dtype_of<S>::value), dst.raw_data(),
                static_cast<int>(dtype_of<D>::value), n, cuda::compute_stream());
  c.compare(dst, want);
}

template <class S>
void validate_casts_from(Check& c, const std::vector<double>& values) {
  validate_cast<S, float>(c, values);
  validate_cast<S, double>(c, values);
  validate_cast<S, bf16>(c, values);
}

void validate_casts(Check& c, std::mt19937_64& gen) {
  // Values over 2^-20 .. 2^20 times a normal, and every 13th one special: NaN, infinities, signed zero,
  // beyond float's range, float and double subnormals, bf16 rounding ties (to even: down, then up).
  const double inf = std::numeric_limits<double>::infinity();
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(),
                             inf,
                             -inf,
                             -0.0,
                             1e300,
                             -1e300,
                             1e-40,
                             5e-324,
                             3.4e38,
                             1.0 + std::ldexp(1.0, -8),
                             1.0 + 3 * std::ldexp(1.0, -8),
                             -(1.0 + std::ldexp(1.0, -8))};
  constexpr int kSpecials = sizeof specials / sizeof specials[0];
  std::normal_distribution<double> d;
  for (const int64_t n : kSizes) {
    std::vector<double> v(n);
    for (int64_t i = 0; i < n; ++i)
      v[i] = i % 13 == 12 ? specials[(i / 13) % kSpecials] : d(gen) * std::ldexp(1.0, int(i % 41) - 20);
    validate_casts_from<float>(c, v);
    validate_casts_from<double>(c, v);
    validate_casts_from<bf16>(c, v);
  }
}

// The packed kernels' grid-stride loops past one grid of kMaxBlocks x kThreads packs (the sizes above reach
// it element by element, not in packs of 4 or 8): n = 16777259 > 8 grids' worth of elements, with a tail
// of 3 (V = 4, 8) or 1 (V = 2); a max pool whose backward has 2.4M packs of 4 floats.
void validate_wrap(Checks& c, std::mt19937_64& gen) {
  cudaStream_t s = cuda::compute_stream();
  constexpr int64_t n = 16777259;
  {
    const std::vector<float> x = random<float>(n, gen), b = random<float>(n, gen);
    std::vector<float> want(n), inplace = b;
    cpu::relu_forward(x.data(), want.data(), n);
    cpu::add_inplace(inplace.data(), x.data(), n);
    const Tensor dx = upload(x), out = poisoned<float>(n), acc = upload(b, poison<float>());
    kernels::relu_forward(dx.data<float>(), out.data<float>(), n, s);
    kernels::add_inplace(acc.data<float>(), dx.data<float>(), n, s);
    c.relu_forward.compare(out, want);
    c.add_inplace.compare(acc, inplace);
    // float -> bf16 (packs of 4) and bf16 -> float
    const Tensor half = poisoned<bf16>(n), back = poisoned<float>(n);
    kernels::cast(dx.raw_data(), int(DType::f32), half.raw_data(), int(DType::bf16), n, s);
    const Tensor host_half = Tensor::from_vector(x, {n}).to(DType::bf16);
    c.cast.compare(half, host_half.to_vector<bf16>());
    const std::vector<bf16> h = host_half.to_vector<bf16>();
    const Tensor dh = upload(h);
    kernels::cast(dh.raw_data(), int(DType::bf16), back.raw_data(), int(DType::f32), n, s);
    c.cast.compare(back, host_half.to(DType::f32).to_vector<float>());
    // bf16 maps (packs of 8)
    std::vector<bf16> hb = random_bf16(n, gen), relu_h(n), sum_h(n);
    cpu::relu_forward(h.data(), relu_h.data(), n);
    cpu::add(h.data(), hb.data(), sum_h.data(), n);
    const Tensor dhb = upload(hb), out_relu = poisoned<bf16>(n), out_sum = poisoned<bf16>(n);
    kernels::relu_forward(dh.data<bf16>(), out_relu.data<bf16>(), n, s);
    kernels::add(dh.data<bf16>(), dhb.data<bf16>(), out_sum.data<bf16>(), n, s);
    c.bf16_relu.compare(out_relu, relu_h);
    c.bf16_add.compare(out_sum, sum_h);
  }
  {
    const MaxPoolCase m{12, 112, 112, 64, 3, 2, 1};
    const int64_t P = 56, Q = 56, in = m.N * m.H * m.W * m.C, out = m.N * P * Q * m.C;
    const std::vector<float> x = random<float>(in, gen), g = random<float>(out, gen);
    std::vector<float> y(out), want(in);
    std::vector<int32_t> arg(out);
    cpu::max_pool2d_forward(x.data(), y.data(), arg.data(), m.N, m.H, m.W, m.C, P, Q, m.kernel, m.stride,
                            m.pad);
    cpu::max_pool2d_backward(g.data(), arg.data(), want.data(), m.N, m.H, m.W, m.C, P, Q);
    const Tensor dx = upload(x), dy = poisoned<float>(out), darg = poisoned<int32_t>(out);
    kernels::max_pool2d_forward(dx.data<float>(), dy.data<float>(), darg.data<int32_t>(), m.N, m.H, m.W, m.C,
                                P, Q, m.kernel, m.stride, m.pad, s);
    c.max_pool_forward.compare(dy, y);
    c.max_pool_forward.compare(darg, arg);
    const Tensor dg = upload(g), carg = upload(arg), dgx = poisoned<float>(in);
    kernels::max_pool2d_backward(dg.data<float>(), carg.data<int32_t>(), dgx.data<float>(), m.N, m.H, m.W,
                                 m.C, P, Q, m.kernel, m.stride, m.pad, s);
    c.max_pool_backward.compare(dgx, want);
  }
}

bool validate(lab::Report& report) {
  std::mt19937_64 gen(0);
  Checks c;
  for (bool unpacked : {false, true}) {  // the packed kernels, then the element-by-element ones
    kernels::force_unpacked_elementwise(unpacked);
    validate_elementwise<float>(c, gen);
    validate_elementwise<double>(c, gen);
    validate_casts(c.cast, gen);
  }
  kernels::force_unpacked_elementwise(false);
  validate_misaligned<float>(c.misaligned, gen);
  validate_misaligned<double>(c.misaligned, gen);
  for (bool unpacked : {false, true})  // the packed max-pool kernels, and the scalar ones on the same shapes
    for (bool wide : {false, true}) {  // the 32-bit and the 64-bit index kernels
      kernels::force_unpacked_pools(unpacked);
      kernels::force_64bit_pool_indices(wide);
      validate_pools<float>(c, gen);
      validate_pools<double>(c, gen);
    }
  kernels::force_64bit_pool_indices(false);
  for (bool unpacked : {false, true})
    for (bool wide : {false, true}) {
      kernels::force_unpacked_pools(unpacked);
      kernels::force_unpacked_elementwise(unpacked);
      kernels::force_64bit_pool_indices(wide);
      validate_bf16(c, gen);
    }
  kernels::force_unpacked_pools(false);
  kernels::force_unpacked_elementwise(false);
  kernels::force_64bit_pool_indices(false);
  validate_wrap(c, gen);
  return c.report(report);
}

// Version 1 of column_sums and add_row_bias, kept for the side-by-side timing: one thread per column walking
// every row; one thread per element with a 64-bit i % cols.
__global__ void column_sums_v1_kernel(const float* __restrict__ x, int64_t rows, int64_t cols,
                                      float* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += stride) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += static_cast<double>(x[r * cols + c]);
    out[c] = static_cast<float>(s);
  }
}
void column_sums_v1(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t s) {
  column_sums_v1_kernel<<<kernels::grid_1d(cols), kernels::kThreads, 0, s>>>(x, rows, cols, out);
  BYOL_CUDA_CHECK_LAUNCH();
}
__global__ void add_row_bias_v1_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows,
                                       int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * cols; i += stride)
    y[i] += bias[i % cols];
}
void add_row_bias_v1(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t s) {
  add_row_bias_v1_kernel<<<kernels::grid_1d(rows * cols), kernels::kThreads, 0, s>>>(y, bias, rows, cols);
  BYOL_CUDA_CHECK_LAUNCH();
}

std::string with_n(const char* op, int64_t n) {
  char name[64];
  std::snprintf(name, sizeof name, "%s (n = %.1fM)", op, static_cast<double>(n) / 1e6);
  return name;
}

}  // namespace

int run(lab::Report& report, const std::vector<int64_t>&) {
  report.options = {{"elementwise_n", kAct},
                    {"sum_n", kSum},
                    {"matrix", {kRows, kCols}},
                    {"max_pool_nhwc", {kPoolN, kPoolH, kPoolW, kPoolC}},
                    {"global_avg_pool_nhwc", {kGapN, 7, 7, kGapC}}};
  std::printf(
      "elementwise_lab: elementwise ops and casts on n = %lld floats ([128, 56, 56, 256]), sum over %lld, "
      "column_sums and add_row_bias on [%lld, %lld], max pool 3x3/2 pad 1 on [%lld, %lld, %lld, %lld], "
      "global average pool on [%lld, 7, 7, %lld]\n",
      (long long)kAct, (long long)kSum, (long long)kRows, (long long)kCols, (long long)kPoolN,
      (long long)kPoolH, (long long)kPoolW, (long long)kPoolC, (long long)kGapN, (long long)kGapC);
  const bool valid = validate(report);
  lab::timing_anyway(valid);

  report.measure_copy_bandwidth();
  const Device gpu = Device::cuda();
  cudaStream_t s = cuda::compute_stream();
  std::mt19937_64 gen(1);
  // Distinct buffers (so no read hits another's lines), uploads of the same random values.
  const Tensor host = Tensor::randn({kAct}, gen);
  const Tensor xa = host.to(gpu), xb = host.to(gpu);
  const Tensor ya = Tensor::empty({kAct}, DType::f32, gpu), yb = Tensor::empty({kAct}, DType::f32, gpu);
  const Tensor half = Tensor::empty({kAct}, DType::bf16, gpu), wide = Tensor::empty({kSum}, DType::f64, gpu);
  const Tensor one = Tensor::empty({1}, DType::f32, gpu);
  const Tensor argmax = Tensor::empty({kPoolN * kPoolP * kPoolQ * kPoolC}, DType::i32, gpu);
  const float *x = xa.data<float>(), *b = xb.data<float>();
  float *y = ya.data<float>(), *z = yb.data<float>();
  const double f = sizeof(float), n = static_cast<double>(kAct);
  auto timed = [&](const std::string& name, const std::function<void()>& fn, double bytes) {
    report.timing(name, cuda::time_on_compute_stream(fn), bytes);
  };

  bf16* h = half.data<bf16>();
  // Version 1 (element by element), then version 2 (packs of 16 bytes; ships), side by side.
  for (const bool unpacked : {true, false}) {
    kernels::force_unpacked_elementwise(unpacked);
    const std::string v = unpacked ? "v1 " : "v2 ";
    timed(
        with_n((v + "relu forward").c_str(), kAct), [&] { kernels::relu_forward(x, y, kAct, s); }, 2 * n * f);
    timed(
        with_n((v + "relu backward").c_str(), kAct), [&] { kernels::relu_backward(x, b, y, kAct, s); },
        3 * n * f);
    timed(
        with_n((v + "add").c_str(), kAct), [&] { kernels::add(x, b, y, kAct, s); }, 3 * n * f);
    timed(
        with_n((v + "add_inplace").c_str(), kAct), [&] { kernels::add_inplace(y, x, kAct, s); }, 3 * n * f);
    timed(
        with_n((v + "scale").c_str(), kAct), [&] { kernels::scale(x, 0.5, y, kAct, s); }, 2 * n * f);
    timed(
        with_n((v + "fill_from_scalar").c_str(), kAct),
        [&] { kernels::fill_from_scalar(y, b, 0.5, kAct, s); }, n * f);
    timed(
        with_n((v + "cast f32->bf16").c_str(), kAct),
        [&] { kernels::cast(x, int(DType::f32), h, int(DType::bf16), kAct, s); }, n * (f + 2));
    timed(
        with_n((v + "cast bf16->f32").c_str(), kAct),
        [&] { kernels::cast(h, int(DType::bf16), y, int(DType::f32), kAct, s); }, n * (2 + f));
    timed(
        with_n((v + "cast f32->f64").c_str(), kSum),
        [&] { kernels::cast(x, int(DType::f32), wide.raw_data(), int(DType::f64), kSum, s); },
        kSum * (f + 8));
  }
  kernels::force_unpacked_elementwise(false);
  timed(
      with_n("v1 sum", kSum), [&] { kernels::sum(x, kSum, 1.0, one.data<float>(), s); }, kSum * f);

  // column_sums at the lab's [4096, 4096] and at the step's [256, 4096] (a linear layer's bias gradient at
  // two views of 128); version 1 is kept here (column_sums_v1) for the comparison.
  char name[64];
  for (const int64_t rows : {kRows, int64_t(256)}) {
    const double bytes = static_cast<double>(rows * kCols + kCols) * f;
    std::snprintf(name, sizeof name, "v1 column_sums [%lld, %lld]", (long long)rows, (long long)kCols);
    timed(
        name, [&] { column_sums_v1(x, rows, kCols, y, s); }, bytes);
    std::snprintf(name, sizeof name, "v2 column_sums [%lld, %lld]", (long long)rows, (long long)kCols);
    timed(
        name, [&] { kernels::column_sums(x, rows, kCols, y, s); }, bytes);
  }
  const double mat = static_cast<double>(kRows * kCols);
  std::snprintf(name, sizeof name, "v1 add_row_bias [%lld, %lld]", (long long)kRows, (long long)kCols);
  timed(
      name, [&] { add_row_bias_v1(y, b, kRows, kCols, s); }, (2 * mat + kCols) * f);
  std::snprintf(name, sizeof name, "v2 add_row_bias [%lld, %lld]", (long long)kRows, (long long)kCols);
  timed(
      name, [&] { kernels::add_row_bias(y, b, kRows, kCols, s); }, (2 * mat + kCols) * f);

  const double pool_in = static_cast<double>(kPoolN * kPoolH * kPoolW * kPoolC);
  const double pool_out = static_cast<double>(kPoolN * kPoolP * kPoolQ * kPoolC);
  int32_t* arg = argmax.data<int32_t>();
  for (const bool unpacked : {true, false}) {  // version 2 (scalar), then 3 (packs of channels; ships)
    kernels::force_unpacked_pools(unpacked);
    const std::string v = unpacked ? "v2" : "v3";
    timed(
        v + " max_pool 3x3/2 forward",
        [&] {
          kernels::max_pool2d_forward(x, y, arg, kPoolN, kPoolH, kPoolW, kPoolC, kPoolP, kPoolQ, 3, 2, 1, s);
        },
        (pool_in + 2 * pool_out) * f);
    timed(
        v + " max_pool 3x3/2 backward",
        [&] {
          kernels::max_pool2d_backward(b, arg, z, kPoolN, kPoolH, kPoolW, kPoolC, kPoolP, kPoolQ, 3, 2, 1, s);
        },
        (2 * pool_out + pool_in) * f);
  }
  kernels::force_unpacked_pools(false);

  // bf16 activations (issue 17): the same kernels on bf16 rows, half the bytes.
  const Tensor ha = xa.to(DType::bf16), hb = xb.to(DType::bf16), hy = Tensor::empty({kAct}, DType::bf16, gpu);
  const bf16 *ba = ha.data<bf16>(), *bb = hb.data<bf16>();
  bf16* by = hy.data<bf16>();
  for (const bool unpacked : {true, false}) {
    kernels::force_unpacked_elementwise(unpacked);
    const std::string v = unpacked ? "v1 " : "v2 ";
    timed(
        with_n((v + "bf16 relu forward").c_str(), kAct), [&] { kernels::relu_forward(ba, by, kAct, s); },
        2 * n * 2);
    timed(
        with_n((v + "bf16 relu backward").c_str(), kAct),
        [&] { kernels::relu_backward(ba, bb, by, kAct, s); }, 3 * n * 2);
    timed(
        with_n((v + "bf16 add").c_str(), kAct), [&] { kernels::add(ba, bb, by, kAct, s); }, 3 * n * 2);
    timed(
        with_n((v + "bf16 add_inplace").c_str(), kAct), [&] { kernels::add_inplace(by, ba, kAct, s); },
        3 * n * 2);
  }
  kernels::force_unpacked_elementwise(false);
  for (const bool unpacked : {true, false}) {
    kernels::force_unpacked_pools(unpacked);
    const std::string v = unpacked ? "v2" : "v3";
    timed(
        v + " bf16 max_pool 3x3/2 forward",
        [&] {
          kernels::max_pool2d_forward(ba, by, arg, kPoolN, kPoolH, kPoolW, kPoolC, kPoolP, kPoolQ, 3, 2, 1,
                                      s);
        },
        pool_in * 2 + pool_out * (2 + 4));
    timed(
        v + " bf16 max_pool 3x3/2 backward",
        [&] {
          kernels::max_pool2d_backward(bb, arg, by, kPoolN, kPoolH, kPoolW, kPoolC, kPoolP, kPoolQ, 3, 2, 1,
                                       s);
        },
        pool_out * (2 + 4) + pool_in * 2);
  }
  kernels::force_unpacked_pools(false);

  const double gap = static_cast<double>(kGapN * kGapHW * kGapC + kGapN * kGapC) * f;
  for (const bool unpacked : {true, false}) {
    kernels::force_unpacked_pools(unpacked);
    timed(
        unpacked ? "v1 global_avg_pool forward" : "v3 global_avg_pool forward",
        [&] { kernels::global_avg_pool_forward(x, y, kGapN, kGapHW, kGapC, s); }, gap);
    timed(
        unpacked ? "v2 global_avg_pool backward" : "v3 global_avg_pool backward",
        [&] { kernels::global_avg_pool_backward(b, z, kGapN, kGapHW, kGapC, s); }, gap);
  }
  kernels::force_unpacked_pools(false);
  return valid ? 0 : 1;
}

int main(int argc, char** argv) {
  return lab::lab_main(argc, argv, "elementwise_lab",
                       "elementwise_lab [--json FILE]   (fixed ResNet-50 sizes; see the file header)", {0},
                       run);
}
