// Float32 NHWC convolutions on oneDNN (Debian's libdnnl), the library PyTorch's CPU convolutions use, with
// float32 or bf16 products (ConvGeom::bf16: the operands reordered to bf16 by the plan, AMX or
// AVX512-BF16 kernels where the CPU has them, float32 outputs; no Winograd). With bf16 activations the
// same plans take bf16 inputs as they are and write bf16 outputs (onednn_conv2d_* on bf16 activations).
//
// Two oneDNN algorithms:
//  - direct (brgconv / jit kernels) on the NHWC activations in place — no im2col buffer, no col2im
//    scatter; only the weights are reordered, from our KRSC ("ohwi") into the blocked layout the kernel
//    wants, and the weight gradient back;
//  - Winograd F(4x4, 3x3) (jit_wino_4x3) for 3x3 stride-1 convolutions with enough channels and outputs
//    (winograd_applies below), where oneDNN offers it: 36 multiplications per 4x4 output tile instead of 144.
//    Its kernels need blocked activations (nChw16c), so the input and the output of each such convolution are
//    reordered to and from NHWC around it (memory-bound passes, included in every timing). Its error against
//    a float64 reference is of the same order as the direct kernels' (~1e-6 relative;
//    tests/test_conv_onednn.cpp bounds both).
// ConvAlgorithm::onednn_winograd (the default) uses Winograd where it applies and direct elsewhere;
// onednn_direct never uses Winograd. benchmarks/cpu_ops_bench times every choice side by side.
// Primitives are built once per geometry and algorithm and cached (oneDNN JIT-compiles them).
//
// The im2col path stays the reference: it handles float64 (the gradient checks), and it is used when
// oneDNN would only offer its slow reference implementation for a geometry ("ref:any"), or when
// set_conv_algorithm(ConvAlgorithm::im2col) / BYOL_CPU_CONV=im2col asks for it. Calls are not meant to run
// concurrently from several threads (oneDNN's library-managed scratchpad); the engine never does.
#include "engine/common.h"
#include "engine/cpu/cpu_backend.h"

#if BYOL_WITH_ONEDNN
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <type_traits>

#include "engine/cpu/onednn_common.h"
#endif

namespace byol::cpu {

namespace {
#if BYOL_WITH_ONEDNN
bool is_reference(const char* impl) {
  return std::strncmp(impl, "ref", 3) == 0;
}
#endif

ConvAlgorithm initial_algorithm() {
#if BYOL_WITH_ONEDNN
  const char* env = std::getenv("BYOL_CPU_CONV");
  // Without AVX-512 the default is oneDNN's direct kernels (its Winograd kernel needs AVX-512). History: on
  // an AMD EPYC with AVX2 (2026-12-03) the oneDNN path crashed in the evaluation tests at one thread, the
  // jit_1x1 kernels' overrun on strided 1x1 convolutions of few channels found under valgrind that day
  // (faulty_kernel avoids them), and the default there became im2col. On the same kind of machine
  // (2026-12-05) the direct kernels passed every CPU test (the evaluation tests at one thread, the
  // bitwise-resume test), ran 60 training steps twice to the same bits and byol-pretrain under valgrind
  // (synthetic 3-channel images) without an error, at 1.5x the im2col step (byol_step_bench 128 10 16 28
  // 1024 imagenet: 1,609 against 1,080 images/s).
  if ((env == nullptr || *env == 0) && !__builtin_cpu_supports("avx512f"))
    return ConvAlgorithm::onednn_direct;
  if (env == nullptr || *env == 0 || std::strcmp(env, "winograd") == 0) return ConvAlgorithm::onednn_winograd;
  if (std::strcmp(env, "direct") == 0) return ConvAlgorithm::onednn_direct;
  if (std::strcmp(env, "im2col") == 0) return ConvAlgorithm::im2col;
  BYOL_FAIL("BYOL_CPU_CONV: expected 'winograd' (the default), 'direct' or 'im2col', got '", env, "'");
#else
  return ConvAlgorithm::im2col;
#endif
}
ConvAlgorithm& algorithm_setting() {
  static ConvAlgorithm a = initial_algorithm();
  return a;
}
}  // namespace

bool onednn_available() {
#if BYOL_WITH_ONEDNN
  return true;
#else
  return false;
#endif
}

bool bf16_measured_faster() {
#if BYOL_WITH_ONEDNN
  return dnnl::get_effective_cpu_isa() == dnnl::cpu_isa::avx512_core_amx;
#else
  return false;
#endif
}

bool bf16_kernels_available() {
#if BYOL_WITH_ONEDNN
  // Asked once: a small bf16 convolution and a bf16 matmul, each with a kernel that is not oneDNN's reference
  // one. On an AVX2-only CPU (AMD EPYC, 2026-12-05) oneDNN 2.6 throws "could not create a primitive
  // descriptor iterator" for both.
  static const bool available = [] {
    using dnnl::memory;
    using DT = memory::data_type;
    using Tag = memory::format_tag;
    try {
      dnnl::engine& eng = onednn::cpu_engine();
      const memory::desc src({1, 16, 8, 8}, DT::bf16, Tag::nhwc), dst({1, 16, 8, 8}, DT::f32, Tag::nhwc);
      const memory::desc weights({16, 16, 3, 3}, DT::bf16, Tag::any);
      const dnnl::convolution_forward::primitive_desc conv(
          dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                          dnnl::algorithm::convolution_direct, src, weights, dst, {1, 1},
                                          {1, 1}, {1, 1}),
          eng);
      const memory::desc a({16, 16}, DT::bf16, Tag::ab), b({16, 16}, DT::bf16, Tag::any),
          c({16, 16}, DT::f32, Tag::ab);
      const dnnl::matmul::primitive_desc mm(dnnl::matmul::desc(a, b, c), eng);
      return !is_reference(conv.impl_info_str()) && !is_reference(mm.impl_info_str());
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
#else
  return false;
#endif
}

void set_conv_algorithm(ConvAlgorithm a) {
  BYOL_CHECK(a == ConvAlgorithm::im2col || onednn_available(),
             "set_conv_algorithm: this build has no oneDNN (install libdnnl-dev and reconfigure)");
  algorithm_setting() = a;
}

ConvAlgorithm conv_algorithm() {
  return algorithm_setting();
}

#if BYOL_WITH_ONEDNN
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;

using onednn::cpu_engine;
using onednn::cpu_stream;

// One pass (forward, backward data or backward weights): its primitive and the layouts it runs on.
// `in` / `out` are the activation layouts (NHWC for direct kernels, blocked for Winograd); `weights` is
// the weight (or weight-gradient) layout.
struct Pass {
  dnnl::primitive prim;
  memory::desc in, in2, out, weights;  // in2: backward weights' second activation input (diff_dst)
  bool ok = false;
  std::string impl;
  // From the caller's layouts into the pass's (in, in2, weights) and back (out); empty where they agree.
  // Built once with the plan, so a call creates no primitive.
  dnnl::reorder to_in, to_in2, to_weights, from_out;
};

struct ConvPlan {
  memory::desc src, dst, user_weights;  // the caller's NHWC activations and KRSC weights
  Pass fwd, bwd_data, bwd_weights;
};

using PlanKey =
    std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;

// The three passes with `alg` and activations in `act` layout (nhwc or any). Throws dnnl::error when
// oneDNN has no implementation at all (the caller then tries the next choice).
struct Pds {
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights;
};
// With g.bf16 the passes read their two operands as bf16 (the plan's reorders convert the caller's
// float32) and write float32: forward src and weights, backward data diff_dst and weights, and where
// bf16_backward_filter(g) backward weights src and diff_dst.
// `storage`: the caller's activations (f32, or bf16 for bf16 activations: the passes then write bf16 outputs
// straight from their float32 sums).
Pds make_pds(const ConvGeom& g, dnnl::algorithm alg, Tag act, DT storage = DT::f32) {
  const memory::dims strides = {g.stride, g.stride}, pad = {g.pad, g.pad};
  const DT operand = g.bf16 ? DT::bf16 : DT::f32;
  const memory::desc src({g.N, g.C, g.H, g.W}, operand, act), dst({g.N, g.K, g.P, g.Q}, operand, act);
  const memory::desc src_out({g.N, g.C, g.H, g.W}, storage, act), dst_out({g.N, g.K, g.P, g.Q}, storage, act);
  const memory::desc weights({g.K, g.C, g.R, g.S}, operand, Tag::any);
  const memory::desc weights_out({g.K, g.C, g.R, g.S}, DT::f32, Tag::any);
  const DT filter_operand = bf16_backward_filter(g) ? DT::bf16 : DT::f32;
  const memory::desc src_filter({g.N, g.C, g.H, g.W}, filter_operand, act),
      dst_filter({g.N, g.K, g.P, g.Q}, filter_operand, act);
  dnnl::engine& eng = cpu_engine();
  dnnl::convolution_forward::primitive_desc fwd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src, weights, dst_out, strides,
                                      pad, pad),
      eng);
  dnnl::convolution_backward_data::primitive_desc bwd_data(
      dnnl::convolution_backward_data::desc(alg, src_out, weights, dst, strides, pad, pad), eng, fwd);
  dnnl::convolution_backward_weights::primitive_desc bwd_weights(
      dnnl::convolution_backward_weights::desc(alg, src_filter, weights_out, dst_filter, strides, pad, pad),
      eng, fwd);
  return {fwd, bwd_data, bwd_weights};
}

// oneDNN 2.6.3's (Debian 12's) jit_1x1 kernels for strided 1x1 convolutions write past their buffers
// when the input has fewer than 8 channels: heap corruption, then a crash or wrong numbers far from the
// convolution (AVX2, jit_1x1:avx2; found under valgrind on 2026-12-03: the forward and backward-data passes
// with 1-6 input channels fault, 7 and 8+ run clean). Only test-sized networks have such layers, so all
// three passes of such a geometry take the im2col path. Bounded at 16 channels, AVX-512's block, where
// the same kernel family was never run under a memory checker.
bool faulty_kernel(const ConvGeom& g, const std::string& impl) {
  return impl.rfind("jit_1x1", 0) == 0 && g.R == 1 && g.S == 1 && g.stride > 1 && g.C < 16;
}

// A pass is used when oneDNN offers a real kernel for it (not the reference one) that is not known to be
// faulty.
void set_pass(Pass& pass, const char* impl, const ConvGeom& g) {
  pass.impl = impl;
  pass.ok = !is_reference(impl) && !faulty_kernel(g, pass.impl);
  if (faulty_kernel(g, pass.impl)) pass.impl += " (avoided: im2col)";
}

void fill_passes(ConvPlan& plan, const Pds& p, const ConvGeom& g) {
  set_pass(plan.fwd, p.fwd.impl_info_str(), g);
  plan.fwd.in = p.fwd.src_desc(), plan.fwd.out = p.fwd.dst_desc(), plan.fwd.weights = p.fwd.weights_desc();
  if (plan.fwd.ok) plan.fwd.prim = dnnl::convolution_forward(p.fwd);
  set_pass(plan.bwd_data, p.bwd_data.impl_info_str(), g);
  plan.bwd_data.in = p.bwd_data.diff_dst_desc(), plan.bwd_data.out = p.bwd_data.diff_src_desc();
  plan.bwd_data.weights = p.bwd_data.weights_desc();
  if (plan.bwd_data.ok) plan.bwd_data.prim = dnnl::convolution_backward_data(p.bwd_data);
  set_pass(plan.bwd_weights, p.bwd_weights.impl_info_str(), g);
  plan.bwd_weights.in = p.bwd_weights.src_desc(), plan.bwd_weights.in2 = p.bwd_weights.diff_dst_desc();
  plan.bwd_weights.weights = p.bwd_weights.diff_weights_desc();
  if (plan.bwd_weights.ok) plan.bwd_weights.prim = dnnl::convolution_backward_weights(p.bwd_weights);
}

// 3x3 stride-1 convolutions large enough for Winograd to pay for its 4x4 tiles, 16-channel blocks and
// activation reorders. Measured here (forward + both backwards, batch 64-128, AVX-512): it wins from 32
// input channels at 8x8 outputs (1.2-1.9x) and from 128 channels at 4x4 (1.6-1.9x); it loses with 16
// channels (2x slower at 7x7 to 32x32), with 32-64 channels at 4x4, and at 2x2 and 1x1 outputs (up to
// 10x slower), as on Fashion-MNIST's 28x28 images; a 3-channel stem runs at a quarter of the direct speed.
bool winograd_applies(const ConvGeom& g) {
  const int64_t area = g.P * g.Q;
  return g.R == 3 && g.S == 3 && g.stride == 1 && g.pad == 1 &&
         ((g.C >= 32 && area >= 64) || (g.C >= 128 && area >= 16));
}

std::unique_ptr<ConvPlan> make_plan(const ConvGeom& g, ConvAlgorithm a, DT storage) {
  auto plan = std::make_unique<ConvPlan>();
  plan->src = memory::desc({g.N, g.C, g.H, g.W}, storage, Tag::nhwc);
  plan->dst = memory::desc({g.N, g.K, g.P, g.Q}, storage, Tag::nhwc);
  plan->user_weights = memory::desc({g.K, g.C, g.R, g.S}, DT::f32, Tag::ohwi);
  fill_passes(*plan, make_pds(g, dnnl::algorithm::convolution_direct, Tag::nhwc, storage), g);
  if (a == ConvAlgorithm::onednn_winograd && winograd_applies(g)) {
    // Winograd where oneDNN has a real kernel for it; each pass keeps the direct kernel otherwise. It is
    // float32 only: with g.bf16 it can serve a backward-filter pass that stays float32.
    try {
      ConvGeom f = g;
      f.bf16 = false;
      const Pds w = make_pds(f, dnnl::algorithm::convolution_winograd, Tag::any);
      ConvPlan wino;
      fill_passes(wino, w, f);
      auto take = [](Pass& into, Pass& from) {
        if (from.ok && from.impl.find("wino") != std::string::npos) into = std::move(from);
      };
      if (!g.bf16) {
        take(plan->fwd, wino.fwd);
        take(plan->bwd_data, wino.bwd_data);
      }
      if (!bf16_backward_filter(g)) take(plan->bwd_weights, wino.bwd_weights);
    } catch (const dnnl::error&) {
      // no Winograd implementation for this geometry on this CPU: the direct passes stay
    }
  }
  auto reorder = [](const memory::desc& from, const memory::desc& to) {
    dnnl::engine& eng = cpu_engine();
    return from == to ? dnnl::reorder() : dnnl::reorder(dnnl::reorder::primitive_desc(eng, from, eng, to));
  };
  Pass &f = plan->fwd, &bd = plan->bwd_data, &bw = plan->bwd_weights;
  if (f.ok) {
    f.to_in = reorder(plan->src, f.in), f.to_weights = reorder(plan->user_weights, f.weights);
    f.from_out = reorder(f.out, plan->dst);
  }
  if (bd.ok) {
    bd.to_in = reorder(plan->dst, bd.in), bd.to_weights = reorder(plan->user_weights, bd.weights);
    bd.from_out = reorder(bd.out, plan->src);
  }
  if (bw.ok) {
    bw.to_in = reorder(plan->src, bw.in), bw.to_in2 = reorder(plan->dst, bw.in2);
    bw.from_out = reorder(bw.weights, plan->user_weights);
  }
  return plan;
}

// The cached plan of a geometry and algorithm (built on first use). Plans are never evicted: a network
// has a few dozen geometries per batch size.
ConvPlan& plan_for(const ConvGeom& g, DT storage = DT::f32) {
  static std::mutex mu;
  static std::map<PlanKey, std::unique_ptr<ConvPlan>> plans;
  const ConvAlgorithm a = conv_algorithm();
  const PlanKey key{g.N, g.H, g.W,      g.C,   g.K,
                    g.R, g.S, g.stride, g.pad, 4 * static_cast<int>(a) + 2 * (storage == DT::bf16) + g.bf16};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it == plans.end()) {
    try {
      it = plans.emplace(key, make_plan(g, a, storage)).first;
    } catch (const dnnl::error& e) {
      BYOL_FAIL("conv2d (oneDNN): cannot build a convolution for input [", g.N, ", ", g.H, ", ", g.W, ", ",
                g.C, "], weight [", g.K, ", ", g.R, ", ", g.S, ", ", g.C, "], stride ", g.stride,
                ", padding ", g.pad, ": ", e.what(), " (set BYOL_CPU_CONV=im2col to use the im2col path)");
    }
  }
  return *it->second;
}

template <class F>
void run_checked(const char* what, const ConvGeom& g, F&& body) {
  onednn::run_checked(what, "oneDNN", g, body);
}

// The caller's buffer `data` (layout `user`) as oneDNN memory in layout `want`: the buffer itself when
// there is no reorder, else a copy made by the plan's reorder.
memory as_layout(const dnnl::reorder& r, const memory::desc& want, const memory::desc& user,
                 const void* data) {
  dnnl::engine& eng = cpu_engine();
  memory m(user, eng, const_cast<void*>(data));
  if (!r) return m;
  memory converted(want, eng);
  r.execute(cpu_stream(), m, converted);
  return converted;
}

// Where a pass writes: the caller's buffer when there is no reorder back, else scratch memory that
// copy_back() reorders into the caller's buffer.
memory output_memory(const dnnl::reorder& r, const memory::desc& want, const memory::desc& user, void* data) {
  dnnl::engine& eng = cpu_engine();
  return r ? memory(want, eng) : memory(user, eng, data);
}
void copy_back(const dnnl::reorder& r, memory& m, const memory::desc& user, void* data) {
  if (!r) return;
  memory dst(user, cpu_engine(), data);
  r.execute(cpu_stream(), m, dst);
}

}  // namespace

namespace {

// Whether oneDNN can run a pass with these operands: bf16 products or activations need its bf16 kernels.
bool onednn_runs(const ConvGeom& g, DT storage) {
  return !(g.bf16 || storage == DT::bf16) || bf16_kernels_available();
}

// The three passes on the caller's buffers, activations of dtype `storage` (weights and their gradient f32).

bool forward_pass(const void* x, const float* w, void* y, const ConvGeom& g, DT storage) {
  if (!onednn_runs(g, storage)) return false;
  ConvPlan& plan = plan_for(g, storage);
  Pass& p = plan.fwd;
  if (!p.ok) return false;
  run_checked("forward", g, [&] {
    memory src = as_layout(p.to_in, p.in, plan.src, x);
    memory wm = as_layout(p.to_weights, p.weights, plan.user_weights, w);
    memory dst = output_memory(p.from_out, p.out, plan.dst, y);
    p.prim.execute(cpu_stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}});
    copy_back(p.from_out, dst, plan.dst, y);
    cpu_stream().wait();
  });
  return true;
}

bool backward_data_pass(const void* dy, const float* w, void* dx, const ConvGeom& g, DT storage) {
  if (!onednn_runs(g, storage)) return false;
  ConvPlan& plan = plan_for(g, storage);
  Pass& p = plan.bwd_data;
  if (!p.ok) return false;
  run_checked("backward data", g, [&] {
    memory ddst = as_layout(p.to_in, p.in, plan.dst, dy);
    memory wm = as_layout(p.to_weights, p.weights, plan.user_weights, w);
    memory dsrc = output_memory(p.from_out, p.out, plan.src, dx);
    p.prim.execute(cpu_stream(),
                   {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dsrc}});
    copy_back(p.from_out, dsrc, plan.src, dx);
    cpu_stream().wait();
  });
  return true;
}

bool backward_filter_pass(const void* dy, const void* x, float* dw, const ConvGeom& g, DT storage) {
  if (!onednn_runs(g, storage)) return false;
  ConvPlan& plan = plan_for(g, storage);
  Pass& p = plan.bwd_weights;
  if (!p.ok) return false;
  run_checked("backward filter", g, [&] {
    memory src = as_layout(p.to_in, p.in, plan.src, x);
    memory ddst = as_layout(p.to_in2, p.in2, plan.dst, dy);
    memory dwm = output_memory(p.from_out, p.weights, plan.user_weights, dw);
    p.prim.execute(cpu_stream(),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwm}});
    copy_back(p.from_out, dwm, plan.user_weights, dw);
    cpu_stream().wait();
  });
  return true;
}

}  // namespace

// Float32 activations, or bf16 ones (ConvGeom::bf16 set), which oneDNN's kernels (or the matmul path) read
// as they are, writing bf16 outputs from their float32 sums: no float32 copies.
template <class A>
constexpr DT storage_of() {
  return std::is_same_v<A, bf16> ? DT::bf16 : DT::f32;
}

template <class A>
bool onednn_conv2d_forward(const A* x, const float* w, A* y, const ConvGeom& g) {
  if (bf16_matmul_pass(g, ConvPass::forward)) {
    matmul_bf16_conv2d_forward(x, w, y, g);
    return true;
  }
  return forward_pass(x, w, y, g, storage_of<A>());
}

template <class A>
bool onednn_conv2d_backward_data(const A* dy, const float* w, A* dx, const ConvGeom& g) {
  if (bf16_matmul_pass(g, ConvPass::backward_data)) {
    matmul_bf16_conv2d_backward_data(dy, w, dx, g);
    return true;
  }
  return backward_data_pass(dy, w, dx, g, storage_of<A>());
}

template <class A>
bool onednn_conv2d_backward_filter(const A* dy, const A* x, float* dw, const ConvGeom& g) {
  if (bf16_matmul_pass(g, ConvPass::backward_filter)) {
    matmul_bf16_conv2d_backward_filter(dy, x, dw, g);
    return true;
  }
  return backward_filter_pass(dy, x, dw, g, storage_of<A>());
}

std::string onednn_conv2d_implementation(const ConvGeom& g) {
  if (!onednn_runs(g, DT::f32)) return "float32 on bf16-rounded copies (no oneDNN bf16 kernels on this CPU)";
  const ConvPlan& plan = plan_for(g);
  auto name = [&](ConvPass pass, const Pass& p) {
    return bf16_matmul_pass(g, pass) ? matmul_bf16_conv2d_implementation(g, pass) : p.impl;
  };
  return name(ConvPass::forward, plan.fwd) + " / " + name(ConvPass::backward_data, plan.bwd_data) + " / " +
         name(ConvPass::backward_filter, plan.bwd_weights);
}
#else
template <class A>
bool onednn_conv2d_forward(const A*, const float*, A*, const ConvGeom&) {
  return false;
}
template <class A>
bool onednn_conv2d_backward_data(const A*, const float*, A*, const ConvGeom&) {
  return false;
}
template <class A>
bool onednn_conv2d_backward_filter(const A*, const A*, float*, const ConvGeom&) {
  return false;
}
std::string onednn_conv2d_implementation(const ConvGeom&) {
  return "oneDNN not built in";
}
#endif

#define BYOL_INSTANTIATE_ONEDNN_CONV(A)                                                      \
  template bool onednn_conv2d_forward<A>(const A*, const float*, A*, const ConvGeom&);       \
  template bool onednn_conv2d_backward_data<A>(const A*, const float*, A*, const ConvGeom&); \
  template bool onednn_conv2d_backward_filter<A>(const A*, const A*, float*, const ConvGeom&);
BYOL_INSTANTIATE_ONEDNN_CONV(float)
BYOL_INSTANTIATE_ONEDNN_CONV(bf16)

}  // namespace byol::cpu
