// Float32 NHWC convolutions on oneDNN (Debian's libdnnl), the library PyTorch's CPU convolutions use.
//
// oneDNN's direct convolutions (brgconv / jit) work on the activations in place — no im2col buffer, no
// col2im scatter — and reach a larger share of the FMA peak than im2col + GEMM on ResNet shapes
// (benchmarks/cpu_ops_bench prints both). Activations stay NHWC ("nhwc"), so only the weights are
// reordered: from our KRSC ("ohwi") into the blocked layout the chosen kernel wants, and the weight
// gradient back. Primitives are built once per geometry and cached (oneDNN JIT-compiles them).
//
// The im2col path stays the reference: it handles float64 (the gradient checks), and it is used when
// oneDNN would only offer its slow reference implementation for a geometry ("ref:any"), or when
// set_conv_algorithm(ConvAlgorithm::im2col) / BYOL_CPU_CONV=im2col asks for it.
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
#endif

namespace byol::cpu {

namespace {
ConvAlgorithm initial_algorithm() {
#if BYOL_WITH_ONEDNN
  const char* env = std::getenv("BYOL_CPU_CONV");
  if (env == nullptr || *env == 0 || std::strcmp(env, "onednn") == 0) return ConvAlgorithm::onednn;
  if (std::strcmp(env, "im2col") == 0) return ConvAlgorithm::im2col;
  BYOL_FAIL("BYOL_CPU_CONV: expected 'onednn' or 'im2col', got '", env, "'");
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

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

bool is_reference(const char* impl) {
  return std::strncmp(impl, "ref", 3) == 0;
}

// Everything oneDNN needs for one geometry: the three primitives and the weight layouts they chose.
struct ConvPlan {
  memory::desc src, dst, user_weights;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  memory::desc fwd_weights, bwd_data_weights, diff_weights;
  bool fwd_ok = false, bwd_data_ok = false, bwd_weights_ok = false;
  std::string impl;  // for diagnostics: the implementations oneDNN picked
};

using GeomKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;

std::unique_ptr<ConvPlan> make_plan(const ConvGeom& g) {
  auto plan = std::make_unique<ConvPlan>();
  const memory::dims strides = {g.stride, g.stride}, pad = {g.pad, g.pad};
  plan->src = memory::desc({g.N, g.C, g.H, g.W}, DT::f32, Tag::nhwc);
  plan->dst = memory::desc({g.N, g.K, g.P, g.Q}, DT::f32, Tag::nhwc);
  plan->user_weights = memory::desc({g.K, g.C, g.R, g.S}, DT::f32, Tag::ohwi);
  const memory::desc any_weights({g.K, g.C, g.R, g.S}, DT::f32, Tag::any);
  dnnl::engine& eng = cpu_engine();
  const dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training,
                                           dnnl::algorithm::convolution_direct, plan->src, any_weights,
                                           plan->dst, strides, pad, pad);
  const dnnl::convolution_forward::primitive_desc fpd(fd, eng);
  const dnnl::convolution_backward_data::desc bdd(dnnl::algorithm::convolution_direct, plan->src, any_weights,
                                                  plan->dst, strides, pad, pad);
  const dnnl::convolution_backward_data::primitive_desc bdpd(bdd, eng, fpd);
  const dnnl::convolution_backward_weights::desc bwd(dnnl::algorithm::convolution_direct, plan->src,
                                                     any_weights, plan->dst, strides, pad, pad);
  const dnnl::convolution_backward_weights::primitive_desc bwpd(bwd, eng, fpd);
  plan->fwd_ok = !is_reference(fpd.impl_info_str());
  plan->bwd_data_ok = !is_reference(bdpd.impl_info_str());
  plan->bwd_weights_ok = !is_reference(bwpd.impl_info_str());
  plan->impl = std::string(fpd.impl_info_str()) + " / " + bdpd.impl_info_str() + " / " + bwpd.impl_info_str();
  plan->fwd_weights = fpd.weights_desc();
  plan->bwd_data_weights = bdpd.weights_desc();
  plan->diff_weights = bwpd.diff_weights_desc();
  if (plan->fwd_ok) plan->fwd = dnnl::convolution_forward(fpd);
  if (plan->bwd_data_ok) plan->bwd_data = dnnl::convolution_backward_data(bdpd);
  if (plan->bwd_weights_ok) plan->bwd_weights = dnnl::convolution_backward_weights(bwpd);
  return plan;
}

// The cached plan of a geometry (built on first use). Plans are never evicted: a network has a few dozen
// geometries per batch size.
ConvPlan& plan_for(const ConvGeom& g) {
  static std::mutex mu;
  static std::map<GeomKey, std::unique_ptr<ConvPlan>> plans;
  const GeomKey key{g.N, g.H, g.W, g.C, g.K, g.R, g.S, g.stride, g.pad};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it == plans.end()) {
    try {
      it = plans.emplace(key, make_plan(g)).first;
    } catch (const dnnl::error& e) {
      BYOL_FAIL("conv2d (oneDNN): cannot build a convolution for input [", g.N, ", ", g.H, ", ", g.W, ", ",
                g.C, "], weight [", g.K, ", ", g.R, ", ", g.S, ", ", g.C, "], stride ", g.stride,
                ", padding ", g.pad, ": ", e.what(), " (set BYOL_CPU_CONV=im2col to use the im2col path)");
    }
  }
  return *it->second;
}

// Runs `body` and turns oneDNN's exceptions into ours, naming the geometry.
template <class F>
void run_checked(const char* what, const ConvGeom& g, F&& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    BYOL_FAIL("conv2d ", what, " (oneDNN) failed for input [", g.N, ", ", g.H, ", ", g.W, ", ", g.C,
              "], weight [", g.K, ", ", g.R, ", ", g.S, ", ", g.C, "]: ", e.what());
  }
}

// The user's KRSC weights in the layout `want`: the user's memory itself when the layouts agree.
memory weights_as(const memory::desc& want, const memory::desc& user_desc, const float* w, dnnl::stream& s) {
  dnnl::engine& eng = cpu_engine();
  memory user(user_desc, eng, const_cast<float*>(w));
  if (want == user_desc) return user;
  memory blocked(want, eng);
  dnnl::reorder(user, blocked).execute(s, user, blocked);
  return blocked;
}

}  // namespace

bool onednn_conv2d_forward(const float* x, const float* w, float* y, const ConvGeom& g) {
  ConvPlan& plan = plan_for(g);
  if (!plan.fwd_ok) return false;
  run_checked("forward", g, [&] {
    dnnl::engine& eng = cpu_engine();
    dnnl::stream s(eng);
    memory src(plan.src, eng, const_cast<float*>(x)), dst(plan.dst, eng, y);
    memory wm = weights_as(plan.fwd_weights, plan.user_weights, w, s);
    plan.fwd.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}});
    s.wait();
  });
  return true;
}

bool onednn_conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvGeom& g) {
  ConvPlan& plan = plan_for(g);
  if (!plan.bwd_data_ok) return false;
  run_checked("backward data", g, [&] {
    dnnl::engine& eng = cpu_engine();
    dnnl::stream s(eng);
    memory ddst(plan.dst, eng, const_cast<float*>(dy)), dsrc(plan.src, eng, dx);
    memory wm = weights_as(plan.bwd_data_weights, plan.user_weights, w, s);
    plan.bwd_data.execute(s, {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dsrc}});
    s.wait();
  });
  return true;
}

bool onednn_conv2d_backward_filter(const float* dy, const float* x, float* dw, const ConvGeom& g) {
  ConvPlan& plan = plan_for(g);
  if (!plan.bwd_weights_ok) return false;
  run_checked("backward filter", g, [&] {
    dnnl::engine& eng = cpu_engine();
    dnnl::stream s(eng);
    memory src(plan.src, eng, const_cast<float*>(x)), ddst(plan.dst, eng, const_cast<float*>(dy));
    memory user(plan.user_weights, eng, dw);
    const bool direct = plan.diff_weights == plan.user_weights;
    memory dwm = direct ? user : memory(plan.diff_weights, eng);
    plan.bwd_weights.execute(s,
                             {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwm}});
    if (!direct) dnnl::reorder(dwm, user).execute(s, dwm, user);
    s.wait();
  });
  return true;
}

std::string onednn_conv2d_implementation(const ConvGeom& g) {
  return plan_for(g).impl;
}
#else
bool onednn_conv2d_forward(const float*, const float*, float*, const ConvGeom&) {
  return false;
}
bool onednn_conv2d_backward_data(const float*, const float*, float*, const ConvGeom&) {
  return false;
}
bool onednn_conv2d_backward_filter(const float*, const float*, float*, const ConvGeom&) {
  return false;
}
std::string onednn_conv2d_implementation(const ConvGeom&) {
  return "oneDNN not built in";
}
#endif

}  // namespace byol::cpu
