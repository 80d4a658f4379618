#include "engine/cuda/conv_cudnn.h"

#include "engine/cuda/blas.h"  // pointer_alignment
#include "engine/cuda/context.h"
#include "engine/cuda/conv_select.h"
#include "engine/cuda/cuda_backend.h"  // cast
#include "engine/cuda/cuda_check.h"

#if BYOL_WITH_CUDNN
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
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
void conv2d_forward(const bf16*, const float*, bf16*, const cpu::ConvGeom&) {
  no_cudnn();
}
void force_bf16_conv_fallback(bool) {}
void conv2d_backward_data(const bf16*, const float*, bf16*, const cpu::ConvGeom&) {
  no_cudnn();
}
void conv2d_backward_filter(const bf16*, const bf16*, float*, const cpu::ConvGeom&) {
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
  TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w, cudnnDataType_t type) {
    BYOL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_));
    BYOL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NHWC, type, static_cast<int>(n),
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
  FilterDesc(int64_t k, int64_t c, int64_t r, int64_t s, cudnnDataType_t type) {  // KRSC = NHWC filters
    BYOL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_));
    BYOL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d_, type, CUDNN_TENSOR_NHWC, static_cast<int>(k),
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

// One direction's algorithms: every usable result of its Find, fastest first, and the one to run next
// (conv_select.h). Found again when every one of them has failed.
struct Direction {
  bool found = false;
  bool no_bf16 = false;  // a bf16 plan for which cuDNN found no algorithm: the float32 fallback runs
  std::vector<ConvAlgoResult> candidates;
  size_t next = 0;
};

// bf16 plans: x, y and w in bf16, float accumulation (cuDNN's PSEUDO_BFLOAT16_CONFIG); any math type, the
// tensor cores being the point of bf16. float32 plans: tensor-core math only with TF32 on.
struct ConvPlan {
  ConvPlan(const cpu::ConvGeom& g, bool tf32_on, bool bf16)
      : tf32(tf32_on || bf16),
        bf16(bf16),
        x(g.N, g.C, g.H, g.W, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT),
        y(g.N, g.K, g.P, g.Q, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT),
        w(g.K, g.C, g.R, g.S, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT),
        conv(g.pad, g.stride) {}
  bool tf32;  // tensor-core math allowed (TF32 on, or bf16 data)
  bool bf16;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  Direction fwd, bwd_data, bwd_filter;
  std::mutex mu;
};

// Plans per geometry, TF32 setting, device and alignment class of the call's three pointers (the least
// of their pointer_alignment): an algorithm timed on 256-byte-aligned buffers is not assumed to run on
// a 64-byte-aligned flat-buffer window.
ConvPlan& plan_for(const cpu::ConvGeom& g, bool bf16, const void* a, const void* b, const void* c) {
  static std::mutex mu;
  static std::map<std::array<int64_t, 15>, std::unique_ptr<ConvPlan> > plans;
  const bool tf32 = allow_tf32();
  const int64_t align = std::min({pointer_alignment(a), pointer_alignment(b), pointer_alignment(c)});
  const std::array<int64_t, 15> key{
      g.N,   g.H,         g.W, g.C, g.K, g.R, g.S, g.P, g.Q, g.stride, g.pad, tf32 ? 1 : 0, current_device(),
      align, bf16 ? 1 : 0};
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = plans[key];
  if (!slot) slot = std::make_unique<ConvPlan>(g, tf32, bf16);
  return *slot;
}

std::string describe(const char* what, const cpu::ConvGeom& g) {
  return cat("conv2d (cuDNN ", what, ") for input [", g.N, ", ", g.H, ", ", g.W, ", ", g.C, "] and filters [",
             g.K, ", ", g.R, ", ", g.S, ", ", g.C, "] (stride ", g.stride, ", padding ", g.pad, ")");
}

constexpr int kMaxAlgos = 16;

// Runs cudnnFind*AlgorithmEx through find(perf, &count) -> cudnnStatus_t with the descriptor's math type
// reset to the TF32 setting (the previous direction left its own there), and keeps the usable results.
template <class Perf, class Find>
void find_algorithms(ConvPlan& p, Direction& d, const char* what, const cpu::ConvGeom& g, Find&& find) {
  // The search times every algorithm and waits for the GPU: impossible inside a CUDA graph capture, which a
  // convolution first met there would otherwise break with an obscure cuDNN status.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  BYOL_CUDA_CHECK(cudaStreamIsCapturing(compute_stream(), &capturing));
  BYOL_CHECK(capturing == cudaStreamCaptureStatusNone, describe(what, g),
             ": met for the first time inside a CUDA graph capture, where cuDNN cannot search for its "
             "algorithm; the eager warm-up steps before the capture should have run every convolution of the "
             "step (a geometry or pointer alignment they did not have?)");
  // With TF32 on, CUDNN_DEFAULT_MATH (as PyTorch sets it for float32): cuDNN may use TF32 tensor cores.
  // CUDNN_TENSOR_OP_MATH, used here before 2026-12-05, "will not actively perform datatype down conversion",
  // which may keep float32 convolutions off the tensor cores; the next GPU run compares the ResNet-50 step.
  // bf16 data: CUDNN_TENSOR_OP_MATH, which the legacy API names as the setting for tensor-core convolutions
  // of 16-bit data (PyTorch sets it for fp16 and bf16 alike).
  BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(
      p.conv.get(), p.bf16 ? CUDNN_TENSOR_OP_MATH : (p.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH)));
  Perf perf[kMaxAlgos];
  int count = 0;
  std::vector<ConvAlgoResult> found;
  std::string seen;
  const cudnnStatus_t st = find(perf, &count);  // the workspace is allocated first: its failure throws
  if (st != CUDNN_STATUS_SUCCESS) {
    // A bf16 configuration cuDNN does not take at all may fail the search itself ("not supported", or
    // "bad parameter" for a data type the legacy API refuses): the float32 fallback then runs. Any other
    // status is an error, in bf16 as in float32.
#ifdef CUDNN_STATUS_CATEGORY  // cuDNN 9: sub-codes within the thousands of their category
    const int category = CUDNN_STATUS_CATEGORY(st);
#else
    const int category = st;
#endif
    BYOL_CHECK(p.bf16 && (category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM),
               describe(what, g), ": cuDNN's algorithm search failed: ", cudnnGetErrorString(st));
    cudaGetLastError();  // a refused search may leave a launch error behind: not the next kernel's
    count = 0;
    seen = cat("the search returned ", cudnnGetErrorString(st));
  }
  for (int i = 0; i < count; ++i) {
    found.push_back({static_cast<int>(perf[i].algo), perf[i].status == CUDNN_STATUS_SUCCESS, perf[i].memory,
                     static_cast<int>(perf[i].mathType)});
    seen += cat(i ? ", " : "", static_cast<int>(perf[i].algo), " (", cudnnGetErrorString(perf[i].status),
                ", ", perf[i].memory >> 20, " MiB, math ", static_cast<int>(perf[i].mathType), ")");
  }
  d.candidates = usable_conv_algorithms(found, kWorkspaceLimit, p.tf32, CUDNN_FMA_MATH);
  d.next = 0;
  if (d.candidates.empty() && p.bf16) {
    // The bf16 kernels may want channel counts that are multiples of 8 (the stem has 3): the caller runs the
    // float32 plan on widened copies instead (conv2d_forward and friends for bf16, below).
    std::fprintf(
        stderr,
        "byol.cpp: %s: cuDNN found no bf16 algorithm (%s); this direction runs in float32 on widened "
        "copies of the bf16 operands (the same products), rounded once into bf16\n",
        describe(what, g).c_str(), seen.empty() ? "none" : seen.c_str());
    d.no_bf16 = true;
    d.found = true;
    return;
  }
  BYOL_CHECK(!d.candidates.empty(), describe(what, g), ": no algorithm succeeded within the ",
             kWorkspaceLimit >> 20, " MiB workspace", p.tf32 ? "" : " with FMA math (TF32 off)",
             "; cuDNN found: ", seen.empty() ? "none" : seen);
  d.found = true;
}

bool capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  BYOL_CUDA_CHECK(cudaStreamIsCapturing(compute_stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

// Runs the direction's candidates in turn through exec(algo, workspace, bytes) until one succeeds. false: a
// bf16 direction none of whose algorithms ran (cuDNN timed them in the search, then refused them here),
// which the float32 fallback takes from now on, saying so once. Only a refusal by cuDNN itself counts: where
// every candidate failed for want of workspace memory (a passing peak), the call throws, as in float32.
template <class Algo, class Exec>
bool execute(ConvPlan& p, Direction& d, const char* what, const cpu::ConvGeom& g, Exec&& exec) {
  bool refused_by_cudnn = false;
  try {
    run_first_working(
        d.candidates, d.next, describe(what, g), [&](const ConvAlgoResult& c, std::string& reason) {
          BYOL_CUDNN_CHECK(cudnnSetConvolutionMathType(
              p.conv.get(), p.tf32 ? static_cast<cudnnMathType_t>(c.math) : CUDNN_FMA_MATH));
          void* ws = nullptr;
          try {
            ws = workspace(c.memory);
          } catch (const Error& e) {  // no memory for this one's workspace: the next may need less
            if (capturing()) throw;   // a workspace that may not grow inside a capture is not "no memory"
            reason = e.what();
            return false;
          }
          const cudnnStatus_t st = exec(static_cast<Algo>(c.algo), ws, c.memory);
          if (st == CUDNN_STATUS_SUCCESS) return true;
          refused_by_cudnn = true;
          reason = cudnnGetErrorString(st);
          return false;
        });
    return true;
  } catch (const Error& e) {
    // (inside a capture the failure is the capture's, not the algorithms')
    if (!p.bf16 || !refused_by_cudnn || capturing()) {
      d.found = false;  // the next call finds again
      throw;
    }
    std::fprintf(stderr,
                 "byol.cpp: %s: cuDNN found no bf16 algorithm that runs (%s); this direction runs in float32 "
                 "on widened copies of the bf16 operands, rounded once into bf16\n",
                 describe(what, g).c_str(), e.what());
    d.no_bf16 = true;
    d.found = true;
    return false;
  }
}

bool g_force_bf16_fallback = false;  // force_bf16_conv_fallback

// The three directions on raw pointers: float32 data, or bf16 activations with bf16 filters (the float32
// weights are cast to bf16 first by the callers below). false: a bf16 plan without a cuDNN algorithm, for
// which the caller runs the float32 fallback.
bool forward_impl(bool bf16, const void* x, const void* w, void* y, const cpu::ConvGeom& g) {
  if (bf16 && g_force_bf16_fallback) return false;
  ConvPlan& p = plan_for(g, bf16, x, w, y);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.fwd.found) {
    find_algorithms<cudnnConvolutionFwdAlgoPerf_t>(p, p.fwd, "forward", g, [&](auto* perf, int* count) {
      void* ws = workspace(kWorkspaceLimit);
      return cudnnFindConvolutionForwardAlgorithmEx(h, p.x.get(), x, p.w.get(), w, p.conv.get(), p.y.get(), y,
                                                    kMaxAlgos, count, perf, ws, kWorkspaceLimit);
    });
  }
  if (p.fwd.no_bf16) return false;
  const float one = 1.0f, zero = 0.0f;
  return execute<cudnnConvolutionFwdAlgo_t>(p, p.fwd, "forward", g, [&](auto algo, void* ws, size_t bytes) {
    return cudnnConvolutionForward(h, &one, p.x.get(), x, p.w.get(), w, p.conv.get(), algo, ws, bytes, &zero,
                                   p.y.get(), y);
  });
}

bool backward_data_impl(bool bf16, const void* dy, const void* w, void* dx, const cpu::ConvGeom& g) {
  if (bf16 && g_force_bf16_fallback) return false;
  ConvPlan& p = plan_for(g, bf16, dy, w, dx);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.bwd_data.found) {
    find_algorithms<cudnnConvolutionBwdDataAlgoPerf_t>(
        p, p.bwd_data, "backward data", g, [&](auto* perf, int* count) {
          void* ws = workspace(kWorkspaceLimit);
          return cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w.get(), w, p.y.get(), dy, p.conv.get(),
                                                             p.x.get(), dx, kMaxAlgos, count, perf, ws,
                                                             kWorkspaceLimit);
        });
  }
  if (p.bwd_data.no_bf16) return false;
  const float one = 1.0f, zero = 0.0f;
  return execute<cudnnConvolutionBwdDataAlgo_t>(
      p, p.bwd_data, "backward data", g, [&](auto algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardData(h, &one, p.w.get(), w, p.y.get(), dy, p.conv.get(), algo, ws,
                                            bytes, &zero, p.x.get(), dx);
      });
}

bool backward_filter_impl(bool bf16, const void* dy, const void* x, void* dw, const cpu::ConvGeom& g) {
  if (bf16 && g_force_bf16_fallback) return false;
  ConvPlan& p = plan_for(g, bf16, dy, x, dw);
  cudnnHandle_t h = cudnn_handle();
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.bwd_filter.found) {
    find_algorithms<cudnnConvolutionBwdFilterAlgoPerf_t>(
        p, p.bwd_filter, "backward filter", g, [&](auto* perf, int* count) {
          void* ws = workspace(kWorkspaceLimit);
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x.get(), x, p.y.get(), dy, p.conv.get(),
                                                               p.w.get(), dw, kMaxAlgos, count, perf, ws,
                                                               kWorkspaceLimit);
        });
  }
  if (p.bwd_filter.no_bf16) return false;
  const float one = 1.0f, zero = 0.0f;
  return execute<cudnnConvolutionBwdFilterAlgo_t>(
      p, p.bwd_filter, "backward filter", g, [&](auto algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardFilter(h, &one, p.x.get(), x, p.y.get(), dy, p.conv.get(), algo, ws,
                                              bytes, &zero, p.w.get(), dw);
      });
}

int64_t filter_elements(const cpu::ConvGeom& g) {
  return g.K * g.R * g.S * g.C;
}

// A bf16 copy of the float32 weights (rounded to nearest even) in stream-ordered scratch memory.
DeviceBuffer bf16_copy(const float* w, int64_t n) {
  DeviceBuffer out(static_cast<size_t>(n) * sizeof(bf16));
  cast(w, static_cast<int>(DType::f32), out.get(), static_cast<int>(DType::bf16), n);
  return out;
}

}  // namespace

void force_bf16_conv_fallback(bool on) {
  g_force_bf16_fallback = on;
}

void conv2d_forward(const float* x, const float* w, float* y, const cpu::ConvGeom& g) {
  forward_impl(false, x, w, y, g);
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const cpu::ConvGeom& g) {
  backward_data_impl(false, dy, w, dx, g);
}

void conv2d_backward_filter(const float* dy, const float* x, float* dw, const cpu::ConvGeom& g) {
  backward_filter_impl(false, dy, x, dw, g);
}

// bf16 activations. Where cuDNN has no bf16 algorithm for a geometry and direction, it runs on the float32
// plan over widened copies: the operands are bf16 values (the weights rounded to bf16 first), so their
// products are exact in float32 and in TF32, and the float32 sums are rounded once into the bf16 output, as
// on the CPU (the filter gradient then stays float32, as on the CPU).
namespace {
DeviceBuffer widened(const void* bf16_values, int64_t n) {
  DeviceBuffer out(static_cast<size_t>(n) * sizeof(float));
  cast(bf16_values, static_cast<int>(DType::bf16), out.get(), static_cast<int>(DType::f32), n);
  return out;
}
DeviceBuffer float_buffer(int64_t n) {
  return DeviceBuffer(static_cast<size_t>(n) * sizeof(float));
}
void narrow(const DeviceBuffer& from, void* bf16_out, int64_t n) {
  cast(from.get(), static_cast<int>(DType::f32), bf16_out, static_cast<int>(DType::bf16), n);
}
int64_t input_elements(const cpu::ConvGeom& g) {
  return g.N * g.H * g.W * g.C;
}
int64_t output_elements(const cpu::ConvGeom& g) {
  return g.N * g.P * g.Q * g.K;
}
}  // namespace

void conv2d_forward(const bf16* x, const float* w, bf16* y, const cpu::ConvGeom& g) {
  const DeviceBuffer wb = bf16_copy(w, filter_elements(g));
  if (forward_impl(true, x, wb.get(), y, g)) return;
  const DeviceBuffer xf = widened(x, input_elements(g)), wf = widened(wb.get(), filter_elements(g));
  const DeviceBuffer yf = float_buffer(output_elements(g));
  forward_impl(false, xf.get(), wf.get(), yf.get(), g);
  narrow(yf, y, output_elements(g));
}

void conv2d_backward_data(const bf16* dy, const float* w, bf16* dx, const cpu::ConvGeom& g) {
  const DeviceBuffer wb = bf16_copy(w, filter_elements(g));
  if (backward_data_impl(true, dy, wb.get(), dx, g)) return;
  const DeviceBuffer dyf = widened(dy, output_elements(g)), wf = widened(wb.get(), filter_elements(g));
  const DeviceBuffer dxf = float_buffer(input_elements(g));
  backward_data_impl(false, dyf.get(), wf.get(), dxf.get(), g);
  narrow(dxf, dx, input_elements(g));
}

void conv2d_backward_filter(const bf16* dy, const bf16* x, float* dw, const cpu::ConvGeom& g) {
  // cuDNN writes a bf16 filter gradient for bf16 data; it is widened into the float32 gradient (PyTorch's
  // autocast does the same: the bf16 weight copy's gradient, cast back).
  const int64_t n = filter_elements(g);
  {
    DeviceBuffer dwb(static_cast<size_t>(n) * sizeof(bf16));
    if (backward_filter_impl(true, dy, x, dwb.get(), g)) {
      cast(dwb.get(), static_cast<int>(DType::bf16), dw, static_cast<int>(DType::f32), n);
      return;
    }
  }
  const DeviceBuffer dyf = widened(dy, output_elements(g)), xf = widened(x, input_elements(g));
  backward_filter_impl(false, dyf.get(), xf.get(), dw, g);
}

#endif

}  // namespace byol::cuda
