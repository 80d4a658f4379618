// bf16 convolutions as im2col + oneDNN's bf16 matmul (brgemm; AMX where the CPU has it), for the passes where
// oneDNN 2.6's bf16 convolution kernels are slow (cpu::bf16_matmul_pass): ResNet's last stage at 4x4, whose
// 3x3 convolutions brgconv ran at a third of its rate on larger outputs, strided 1x1 convolutions, and the
// weight gradient of outputs up to 8x8 (docs/benchmarks.md, "bf16 convolutions as matmuls"). The same
// products as every bf16 path: operands rounded to bf16 (nearest even), sums in float32, float32 outputs.
// With rows = N*P*Q:
//
//   forward          Y[rows, K]      = col(x)[rows, RSC] * W[K, RSC]^T
//   backward data    dcol[rows, RSC] = dY[rows, K] * W[K, RSC], then col2im (scatter-add) into dX; with
//                    stride 1, the transposed convolution instead: dX = col(dy) * W' (W' the flipped weights)
//   backward filter  dW[K, RSC]      = dY[rows, K]^T * col(x)[rows, RSC]
//
// im2col writes bf16 straight from the activations (float32, or bf16 as they are); the weights go through
// one oneDNN reorder into the matmul's blocked bf16 layout. The matmuls write float32 sums; with bf16
// activations those are rounded once into the bf16 output (forward, backward data). The matmul primitives
// are built once per geometry and cached.
#include <algorithm>

#include "engine/common.h"
#include "engine/cpu/cpu_backend.h"

#if BYOL_WITH_ONEDNN
#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "engine/cpu/im2col.h"
#include "engine/cpu/onednn_common.h"
#include "engine/dtype.h"
#endif

namespace byol::cpu {

// Measured on ResNet-18's CIFAR convolutions at batch 128 (docs/benchmarks.md): the forward and
// backward-data passes gain on outputs of at most 4x4 (1.8x) and on strided 1x1 convolutions (1.4-1.8x),
// and lose on larger 3x3 ones; the backward-filter pass gains on outputs of at most 8x8 (1.2-4x) and loses
// above. Past a 256 MB column matrix (ImageNet-sized batches) the convolution kernels keep the pass.
namespace {
bool& matmul_enabled() {
  static bool enabled = true;
  return enabled;
}
}  // namespace

void set_bf16_matmul_enabled(bool enabled) {
  matmul_enabled() = enabled;
}

bool bf16_matmul_pass(const ConvGeom& g, ConvPass pass) {
  if (!g.bf16 || !onednn_available() || !matmul_enabled() || !bf16_kernels_available()) return false;
  const int64_t area = g.P * g.Q;
  const bool wins =
      pass == ConvPass::backward_filter ? area <= 64 : area <= 16 || (g.R == 1 && g.S == 1 && g.stride > 1);
  // the largest bf16 column matrix of the pass (backward data's transposed convolution reads dy's columns)
  const int64_t column_bytes = 2 * g.N * std::max(area, g.H * g.W) * g.R * g.S * std::max(g.C, g.K);
  return wins && column_bytes <= (int64_t(256) << 20);
}

#if BYOL_WITH_ONEDNN
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;

using onednn::cpu_engine;
using onednn::cpu_stream;

// One matmul src[M, Kd] * weights[Kd, Nd] -> dst[M, Nd] (float32), its primitive and, where the weights
// come from the caller's float32 buffer, the reorder into the layout the kernel wants.
struct Matmul {
  dnnl::matmul prim;
  memory::desc src, weights, dst, user_weights;
  dnnl::reorder to_weights;  // empty where the weights are our own bf16 buffer in the kernel's layout
  std::string impl;
};

Matmul make_matmul(const memory::desc& src, const memory::desc& weights, const memory::desc& dst,
                   const memory::desc& user_weights) {
  dnnl::engine& eng = cpu_engine();
  Matmul m;
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), eng);
  m.prim = dnnl::matmul(pd);
  m.src = pd.src_desc(), m.weights = pd.weights_desc(), m.dst = pd.dst_desc(), m.user_weights = user_weights;
  if (user_weights)
    m.to_weights = dnnl::reorder(dnnl::reorder::primitive_desc(eng, user_weights, eng, m.weights));
  m.impl = pd.impl_info_str();
  return m;
}

// The transposed convolution that gives a stride-1 convolution's input gradient as a forward convolution
// of dy: dx = conv(dy, W') with W'[c, r, s, k] = W[k, R-1-r, S-1-s, c] and padding R-1-pad.
ConvGeom transposed(const ConvGeom& g) {
  ConvGeom t = g;
  t.H = g.P, t.W = g.Q, t.C = g.K, t.K = g.C, t.P = g.H, t.Q = g.W, t.pad = g.R - 1 - g.pad;
  return t;
}
bool backward_data_as_forward(const ConvGeom& g) {
  return g.stride == 1 && g.R == g.S && g.pad <= g.R - 1;
}

struct MatmulPlan {
  Matmul fwd, bwd_data, bwd_filter;
  bool bwd_data_as_forward = false;  // stride 1: im2col(dy) * W'; else dY * W, then col2im
};

// The three matmuls of a geometry. The caller's KRSC weights are W[K, RSC] row-major, i.e. W^T[RSC, K]
// with format "ba"; dY[rows, K] row-major is dY^T[K, rows] with format "ba".
std::unique_ptr<MatmulPlan> make_plan(const ConvGeom& g) {
  const int64_t rows = g.N * g.P * g.Q, rsc = g.R * g.S * g.C, in_rows = g.N * g.H * g.W;
  auto plan = std::make_unique<MatmulPlan>();
  plan->fwd =
      make_matmul(memory::desc({rows, rsc}, DT::bf16, Tag::ab), memory::desc({rsc, g.K}, DT::bf16, Tag::any),
                  memory::desc({rows, g.K}, DT::f32, Tag::ab), memory::desc({rsc, g.K}, DT::f32, Tag::ba));
  plan->bwd_data_as_forward = backward_data_as_forward(g);
  if (plan->bwd_data_as_forward) {  // W' is written in bf16 by flipped_weights(), [RSK, C] row-major
    const int64_t rsk = g.R * g.S * g.K;
    plan->bwd_data = make_matmul(memory::desc({in_rows, rsk}, DT::bf16, Tag::ab),
                                 memory::desc({rsk, g.C}, DT::bf16, Tag::ab),
                                 memory::desc({in_rows, g.C}, DT::f32, Tag::ab), memory::desc());
  } else {
    plan->bwd_data = make_matmul(
        memory::desc({rows, g.K}, DT::bf16, Tag::ab), memory::desc({g.K, rsc}, DT::bf16, Tag::any),
        memory::desc({rows, rsc}, DT::f32, Tag::ab), memory::desc({g.K, rsc}, DT::f32, Tag::ab));
  }
  plan->bwd_filter =
      make_matmul(memory::desc({g.K, rows}, DT::bf16, Tag::ba), memory::desc({rows, rsc}, DT::bf16, Tag::ab),
                  memory::desc({g.K, rsc}, DT::f32, Tag::ab), memory::desc());
  return plan;
}

using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

MatmulPlan& plan_for(const ConvGeom& g) {
  static std::mutex mu;
  static std::map<PlanKey, std::unique_ptr<MatmulPlan>> plans;
  const PlanKey key{g.N, g.H, g.W, g.C, g.K, g.R, g.S, g.stride, g.pad};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it == plans.end()) {
    try {
      it = plans.emplace(key, make_plan(g)).first;
    } catch (const dnnl::error& e) {
      BYOL_FAIL("conv2d (bf16 matmul): cannot build the matmuls for input [", g.N, ", ", g.H, ", ", g.W, ", ",
                g.C, "], weight [", g.K, ", ", g.R, ", ", g.S, ", ", g.C, "]: ", e.what());
    }
  }
  return *it->second;
}

template <class F>
void run_checked(const char* what, const ConvGeom& g, F&& body) {
  onednn::run_checked(what, "bf16 matmul", g, body);
}

memory wrap(const memory::desc& d, const void* data) {
  return memory(d, cpu_engine(), const_cast<void*>(data));
}

// The caller's float32 weights in the matmul's bf16 layout.
memory reordered_weights(const Matmul& m, const float* w) {
  memory user = wrap(m.user_weights, w), out(m.weights, cpu_engine());
  m.to_weights.execute(cpu_stream(), user, out);
  return out;
}

// Scratch buffers reused from call to call, grown and never shrunk: the column matrices are tens of MB,
// and a fresh allocation per call paid for the kernel mapping and zeroing new pages each time. Calls do not
// run concurrently (as the oneDNN convolutions; engine/cpu/conv_onednn.cpp).
enum Slot { kColumns, kRounded, kGradColumns, kFlipped, kSums, kSlots };
template <class T>
T* scratch(Slot slot, int64_t n) {
  struct Buffer {
    std::unique_ptr<void, void (*)(void*)> data{nullptr, std::free};
    size_t bytes = 0;
  };
  static Buffer buffers[kSlots];
  Buffer& b = buffers[slot];
  const size_t bytes = (sizeof(T) * static_cast<size_t>(n) + 63) / 64 * 64;
  if (bytes > b.bytes) {
    b.data.reset(std::aligned_alloc(64, bytes));
    b.bytes = b.data ? bytes : 0;  // after a failure, the next call allocates again
    if (!b.data)
      BYOL_FAIL("conv2d (bf16 matmul): out of host memory allocating ", bytes, " bytes of scratch");
  }
  return static_cast<T*>(b.data.get());
}

const bf16* rounded(Slot slot, const float* x, int64_t n) {
  bf16* r = scratch<bf16>(slot, n);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) r[i] = float_to_bf16(x[i]);
  return r;
}

// bf16 activations are the products' operands as they are.
const bf16* rounded(Slot, const bf16* x, int64_t) {
  return x;
}

template <class A>
const bf16* bf16_columns(const A* x, const ConvGeom& g) {
  bf16* col = scratch<bf16>(kColumns, g.N * g.P * g.Q * g.R * g.S * g.C);
  im2col(x, col, g, 0, g.N);
  return col;
}

// Where a pass's float32 sums go: the output itself for float32 activations; for bf16 ones a float32
// scratch buffer, which store() then rounds once into the output.
float* sums(float* out, int64_t) {
  return out;
}
float* sums(bf16*, int64_t n) {
  return scratch<float>(kSums, n);
}
void store(const float*, float*, int64_t) {}
void store(const float* sum, bf16* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(sum[i]);
}

// W'[(r*S + s)*K + k, c] = W[k, R-1-r, S-1-s, c] in bf16: the transposed convolution's weights.
const bf16* flipped_weights(const float* w, const ConvGeom& g) {
  bf16* f = scratch<bf16>(kFlipped, g.K * g.R * g.S * g.C);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t s = 0; s < g.S; ++s)
      for (int64_t k = 0; k < g.K; ++k) {
        const float* src = w + ((k * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)) * g.C;
        bf16* dst = f + ((r * g.S + s) * g.K + k) * g.C;
        for (int64_t c = 0; c < g.C; ++c) dst[c] = float_to_bf16(src[c]);
      }
  return f;
}

}  // namespace

template <class A>
void matmul_bf16_conv2d_forward(const A* x, const float* w, A* y, const ConvGeom& g) {
  const Matmul& m = plan_for(g).fwd;
  run_checked("forward", g, [&] {
    const int64_t ny = g.N * g.P * g.Q * g.K;
    float* ys = sums(y, ny);
    const bf16* col = bf16_columns(x, g);
    memory wm = reordered_weights(m, w);
    m.prim.execute(
        cpu_stream(),
        {{DNNL_ARG_SRC, wrap(m.src, col)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, wrap(m.dst, ys)}});
    cpu_stream().wait();
    store(ys, y, ny);
  });
}

template <class A>
void matmul_bf16_conv2d_backward_data(const A* dy, const float* w, A* dx, const ConvGeom& g) {
  const MatmulPlan& plan = plan_for(g);
  const Matmul& m = plan.bwd_data;
  run_checked("backward data", g, [&] {
    const int64_t nx = g.N * g.H * g.W * g.C;
    float* dxs = sums(dx, nx);
    if (plan.bwd_data_as_forward) {
      const bf16* col = bf16_columns(dy, transposed(g));
      const bf16* wf = flipped_weights(w, g);
      m.prim.execute(cpu_stream(), {{DNNL_ARG_SRC, wrap(m.src, col)},
                                    {DNNL_ARG_WEIGHTS, wrap(m.weights, wf)},
                                    {DNNL_ARG_DST, wrap(m.dst, dxs)}});
      cpu_stream().wait();
    } else {
      const bf16* dyr = rounded(kRounded, dy, g.N * g.P * g.Q * g.K);
      float* dcol = scratch<float>(kGradColumns, g.N * g.P * g.Q * g.R * g.S * g.C);
      memory wm = reordered_weights(m, w);
      m.prim.execute(
          cpu_stream(),
          {{DNNL_ARG_SRC, wrap(m.src, dyr)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, wrap(m.dst, dcol)}});
      cpu_stream().wait();
      std::fill(dxs, dxs + nx, 0.0f);
      col2im(dcol, dxs, g, 0, g.N);
    }
    store(dxs, dx, nx);
  });
}

template <class A>
void matmul_bf16_conv2d_backward_filter(const A* dy, const A* x, float* dw, const ConvGeom& g) {
  const Matmul& m = plan_for(g).bwd_filter;
  run_checked("backward filter", g, [&] {
    const bf16* dyr = rounded(kRounded, dy, g.N * g.P * g.Q * g.K);
    const bf16* col = bf16_columns(x, g);
    m.prim.execute(cpu_stream(), {{DNNL_ARG_SRC, wrap(m.src, dyr)},
                                  {DNNL_ARG_WEIGHTS, wrap(m.weights, col)},
                                  {DNNL_ARG_DST, wrap(m.dst, dw)}});
    cpu_stream().wait();
  });
}

#define BYOL_INSTANTIATE_MATMUL_CONV(A)                                                           \
  template void matmul_bf16_conv2d_forward<A>(const A*, const float*, A*, const ConvGeom&);       \
  template void matmul_bf16_conv2d_backward_data<A>(const A*, const float*, A*, const ConvGeom&); \
  template void matmul_bf16_conv2d_backward_filter<A>(const A*, const A*, float*, const ConvGeom&);
BYOL_INSTANTIATE_MATMUL_CONV(float)
BYOL_INSTANTIATE_MATMUL_CONV(bf16)

std::string matmul_bf16_conv2d_implementation(const ConvGeom& g, ConvPass pass) {
  const MatmulPlan& p = plan_for(g);
  switch (pass) {
    case ConvPass::forward:
      return "im2col+matmul:" + p.fwd.impl;
    case ConvPass::backward_data:
      return p.bwd_data_as_forward ? "im2col(dy)+matmul:" + p.bwd_data.impl
                                   : "matmul:" + p.bwd_data.impl + "+col2im";
    case ConvPass::backward_filter:
      return "im2col+matmul:" + p.bwd_filter.impl;
  }
  return "";
}
#endif

}  // namespace byol::cpu
