#include "engine/cuda/conv_cudnn.h"

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"

#if BYOL_WITH_CUDNN
#include <cudnn.h>

#include <array>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#endif

namespace byol::cuda {

#if !BYOL_WITH_CUDNN

bool cudnn_available() {
  return false;
}
namespace {
[[noreturn]] void no_cudnn() {
  BYOL_FAIL("conv2d: this build of byol.cpp found no cuDNN, which CUDA convolutions use; reconfigure with ",
            "cuDNN installed (CUDNN_ROOT=...) or run the convolution on the CPU");
}
}  // namespace
void conv2d_forward(const float*, const float*, float*, const cpu::ConvGeom&) {
  no_cudnn();
}
void conv2d_backward_data(const float*, const float*, float*, const cpu::ConvGeom&) {
  no_cudnn();
}
void conv2d_backward_filter(const float*, const float*, float*, const cpu::ConvGeom&) {
  no_cudnn();
}

#else

bool cudnn_available() {
  return true;
}

namespace {

// --- RAII descriptors (move-free: they live inside a heap-allocated plan) ----------------------------
class TensorDesc {
 public:
  TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w) {
    BYOL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_));
    BYOL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, static_cast<int>(n),
                                                static_cast<int>(c), static_cast<int>(h),
                                                static_cast<int>(w)));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc(int64_t k, int64_t c, int64_t r, int64_t s) {  // KRSC = cuDNN's NHWC filter format
    BYOL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_));
    BYOL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, static_cast<int>(k),
                                                static_cast<int>(c), static_cast<int>(r),
                                                static_cast<int>(s)));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc(int64_t pad, int64_t stride) {
    BYOL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_));
    BYOL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d_, static_cast<int>(pad), static_cast<int>(pad),
                                                     static_cast<int>(stride), static_cast<int>(stride), 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

cudnnHandle_t cudnn_handle() {
  static std::mutex mu;
  static std::map<int, cudnnHandle_t> handles;  // per device, never destroyed (as the streams)
  std::lock_guard<std::mutex> lock(mu);
  const int dev = current_device();
  auto it = handles.find(dev);
  if (it != handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  BYOL_CUDNN_CHECK(cudnnCreate(&h));
  BYOL_CUDNN_CHECK(cudnnSetStream(h, compute_stream()));
  handles[dev] = h;
  return h;
}

// One direction's choice: algorithm, its workspace and the math type it was timed with.
template <class Algo>
struct Choice {
  bool found = false;
  Algo algo{};
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

struct ConvPlan {
  ConvPlan(const cpu::ConvGeom& g, bool tf32)
      : x(g.N, g.C, g.H, g.W), y(g.N, g.K, g.P, g.Q), w(g.K, g.C, g.R, g.S), conv(g.pad, g.stride) {
    // TF32 tensor cores only where allowed; FMA math keeps full float32 products.
    BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Choice<cudnnConvolutionFwdAlgo_t> fwd;
  Choice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
  std::mutex mu;
};

ConvPlan& plan_for(const cpu::ConvGeom& g) {
  static std::mutex mu;
  static std::map<std::array<int64_t, 13>, std::unique_ptr<ConvPlan> > plans;
  const bool tf32 = allow_tf32();
  const std::array<int64_t, 13> key{
      g.N, g.H, g.W, g.C, g.K, g.R, g.S, g.P, g.Q, g.stride, g.pad, tf32 ? 1 : 0, current_device()};
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = plans[key];
  if (!slot) slot = std::make_unique<ConvPlan>(g, tf32);
  return *slot;
}

// Picks the fastest successful result that fits the workspace limit, and sets its math type.
template <class Perf, class Algo>
void choose(const Perf* results, int count, Choice<Algo>& choice, const char* what, const cpu::ConvGeom& g) {
  for (int i = 0; i < count; ++i) {  // cuDNN returns them sorted by time
    if (results[i].status != CUDNN_STATUS_SUCCESS || results[i].memory > kWorkspaceLimit) continue;
    choice.algo = results[i].algo;
    choice.workspace = results[i].memory;
    choice.math = results[i].mathType;
    choice.found = true;
    return;
  }
  BYOL_FAIL("conv2d (cuDNN ", what, "): no algorithm fits the ", kWorkspaceLimit >> 20,
            " MiB workspace for input [", g.N, ", ", g.H, ", ", g.W, ", ", g.C, "] and filters [", g.K, ", ",
            g.R, ", ", g.S, ", ", g.C, "] (stride ", g.stride, ", padding ", g.pad, ")");
}

constexpr int kMaxAlgos = 16;

}  // namespace

void conv2d_forward(const float* x, const float* w, float* y, const cpu::ConvGeom& g) {
  ConvPlan& p = plan_for(g);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.fwd.found) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
    int count = 0;
    BYOL_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), x, p.w.get(), w, p.conv.get(),
                                                            p.y.get(), y, kMaxAlgos, &count, perf,
                                                            workspace(kWorkspaceLimit), kWorkspaceLimit));
    choose(perf, count, p.fwd, "forward", g);
  }
  BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.fwd.math));
  const float one = 1.0f, zero = 0.0f;
  BYOL_CUDNN_CHECK(cudnnConvolutionForward(h, &one, p.x.get(), x, p.w.get(), w, p.conv.get(), p.fwd.algo,
                                           workspace(p.fwd.workspace), p.fwd.workspace, &zero, p.y.get(), y));
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const cpu::ConvGeom& g) {
  ConvPlan& p = plan_for(g);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.bwd_data.found) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
    int count = 0;
    BYOL_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        h, p.w.get(), w, p.y.get(), dy, p.conv.get(), p.x.get(), dx, kMaxAlgos, &count, perf,
        workspace(kWorkspaceLimit), kWorkspaceLimit));
    choose(perf, count, p.bwd_data, "backward data", g);
  }
  BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.bwd_data.math));
  const float one = 1.0f, zero = 0.0f;
  BYOL_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, p.w.get(), w, p.y.get(), dy, p.conv.get(),
                                                p.bwd_data.algo, workspace(p.bwd_data.workspace),
                                                p.bwd_data.workspace, &zero, p.x.get(), dx));
}

void conv2d_backward_filter(const float* dy, const float* x, float* dw, const cpu::ConvGeom& g) {
  ConvPlan& p = plan_for(g);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.bwd_filter.found) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
    int count = 0;
    BYOL_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h, p.x.get(), x, p.y.get(), dy, p.conv.get(), p.w.get(), dw, kMaxAlgos, &count, perf,
        workspace(kWorkspaceLimit), kWorkspaceLimit));
    choose(perf, count, p.bwd_filter, "backward filter", g);
  }
  BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.get(), p.bwd_filter.math));
  const float one = 1.0f, zero = 0.0f;
  BYOL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x.get(), x, p.y.get(), dy, p.conv.get(),
                                                  p.bwd_filter.algo, workspace(p.bwd_filter.workspace),
                                                  p.bwd_filter.workspace, &zero, p.w.get(), dw));
}

#endif

}  // namespace byol::cuda
