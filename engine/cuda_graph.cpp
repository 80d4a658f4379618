#include "engine/cuda_graph.h"

#include <mutex>
#include <set>
#include <utility>

#include "engine/common.h"

#if BYOL_WITH_CUDA
#include <cuda_runtime_api.h>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#endif

namespace byol {

#if BYOL_WITH_CUDA

struct CudaGraph::Impl {
  int device = -1;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  // Memory allocated before the capture and freed inside it: the graph's nodes may use it on every replay,
  // so it is released only when the graph is destroyed.
  cuda::CaptureRecord record;
};

namespace {

// Ends a capture that is being abandoned, whatever state it is in, destroys what it made and releases the
// memory whose frees it deferred.
void abandon_capture(cudaStream_t stream) {
  cudaGraph_t partial = nullptr;
  cudaStreamEndCapture(stream, &partial);
  if (partial) cudaGraphDestroy(partial);
  cudaGetLastError();  // the capture's own error has been reported by the caller
  cuda::release_deferred(cuda::end_capture_tracking());
}

bool g_fail_captures = false;  // CudaGraph::fail_captures_for_testing

// Every CudaGraph's state, for CudaGraph::release_all_for_abort.
std::mutex g_live_mu;
std::set<CudaGraph::Impl*>& live_graphs() {
  static std::set<CudaGraph::Impl*> live;
  return live;
}

const char* const kWhatBreaksCapture =
    "a call that waits for the GPU, copies to or from the host, or uses the legacy stream cannot be "
    "captured; train.cuda_graph = false runs the step eagerly";

}  // namespace

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {
  std::lock_guard<std::mutex> lock(g_live_mu);
  live_graphs().insert(impl_.get());
}

CudaGraph::~CudaGraph() {
  try {
    reset();
  } catch (...) {  // a destructor does not throw; the process is ending or the device is gone
  }
  std::lock_guard<std::mutex> lock(g_live_mu);
  live_graphs().erase(impl_.get());
}

void CudaGraph::release_all_for_abort() {
  std::lock_guard<std::mutex> lock(g_live_mu);
  for (Impl* g : live_graphs()) {
    if (g->exec) cudaGraphExecDestroy(g->exec);  // freed by CUDA once a running launch ends
    if (g->graph) cudaGraphDestroy(g->graph);
    g->exec = nullptr;
    g->graph = nullptr;
    g->record = cuda::CaptureRecord{};  // a launch may still use that memory: left to the process's end
    g->device = -1;
  }
}

bool CudaGraph::captured() const {
  return impl_->exec != nullptr;
}

void CudaGraph::reset() {
  if (impl_->device < 0) return;
  cuda::DeviceGuard scope(impl_->device);
  if (impl_->exec) {
    // Its launches may still run: wait for them before the graph's memory goes (first through the NCCL
    // communicator's timed wait, where one is installed: a replay may hold collectives of a dead rank).
    cuda::wait_for_collectives(impl_->device);
    BYOL_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
    cudaGraphExecDestroy(impl_->exec);
    cuda::unpin_workspace();
  }
  if (impl_->graph) cudaGraphDestroy(impl_->graph);
  impl_->exec = nullptr;
  impl_->graph = nullptr;
  cuda::release_deferred(impl_->record);
  impl_->record = cuda::CaptureRecord{};
  cudaDeviceGraphMemTrim(impl_->device);  // the graph's pool back to the driver
  impl_->device = -1;
}

void CudaGraph::capture(Device device, const std::function<void()>& body) {
  BYOL_CHECK(device.is_cuda(), "CUDA graph: capture needs a GPU device, got ", device_name(device));
  reset();
  cuda::DeviceGuard scope(device.index);
  BYOL_CHECK(cuda::uses_memory_pool(device.index), "CUDA graph: ", device_name(device),
             " has no stream-ordered memory pools (cudaDevAttrMemoryPoolsSupported = 0), which graphs that "
             "allocate need; run without a graph (train.cuda_graph = false)");
  const cudaStream_t stream = cuda::compute_stream();
  cuda::create_fill_constants(device.index);  // uploaded on first use: not inside the capture
  // The eager steps before the capture left their activations in the default pool (it retains freed
  // memory): hand that back, since the graph's allocations come from a pool of their own.
  BYOL_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaMemPool_t pool;
  BYOL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device.index));
  BYOL_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));

  cuda::begin_capture_tracking(device.index);
  // Thread-local mode: this thread's calls that cannot be captured fail (and end the capture) instead of
  // running. The compute stream is a blocking stream, so work on the legacy stream from any thread would
  // also break the capture: nothing else may use the GPU while it runs (the loader's threads do not).
  const cudaError_t began = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (began != cudaSuccess) {
    cudaGetLastError();
    cuda::release_deferred(cuda::end_capture_tracking());
    throw Error(cat("CUDA graph: cudaStreamBeginCapture on ", device_name(device),
                    " failed: ", cudaGetErrorString(began)));
  }
  try {
    body();
  } catch (const std::exception& e) {
    abandon_capture(stream);
    throw Error(cat("CUDA graph: the captured step failed: ", e.what(), "\n(", kWhatBreaksCapture, ")"));
  } catch (...) {
    abandon_capture(stream);
    throw;
  }
  if (g_fail_captures) {
    abandon_capture(stream);
    throw Error("CUDA graph: the capture was refused by CudaGraph::fail_captures_for_testing");
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cuda::CaptureRecord record = cuda::end_capture_tracking();
  const auto discard = [&] {
    if (graph) cudaGraphDestroy(graph);  // never launched: leaked pointers' holders will not free them
    cudaGetLastError();
    cuda::release_deferred(record);
  };
  if (ended != cudaSuccess || !graph) {
    discard();
    throw Error(cat("CUDA graph: the capture on ", device_name(device),
                    " was invalidated: ", cudaGetErrorString(ended), " (", kWhatBreaksCapture, ")"));
  }
  if (record.leaked > 0) {
    discard();
    throw Error(cat("CUDA graph: ", record.leaked, " device allocation(s), ", record.leaked_bytes,
                    " bytes, made during the capture are still held after it; a buffer that outlives the "
                    "captured step must be allocated before the capture and written inside it"));
  }
  if (record.failed_frees > 0) {
    discard();
    throw Error(cat("CUDA graph: ", record.failed_frees,
                    " free(s) of memory allocated during the capture were refused by it"));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  if (made != cudaSuccess) {
    discard();
    throw Error(cat("CUDA graph: instantiating the captured graph on ", device_name(device),
                    " failed: ", cudaGetErrorString(made)));
  }
  cuda::pin_workspace();  // the graph's cuDNN / cuBLASLt nodes hold the workspace's address
  impl_->device = device.index;
  impl_->graph = graph;
  impl_->exec = exec;
  impl_->record = std::move(record);
}

void CudaGraph::fail_captures_for_testing(bool on) {
  g_fail_captures = on;
}

void CudaGraph::replay() const {
  BYOL_CHECK(impl_->exec, "CUDA graph: replay() before capture()");
  cuda::DeviceGuard scope(impl_->device);
  BYOL_CUDA_CHECK(cudaGraphLaunch(impl_->exec, cuda::compute_stream()));
}

#else  // a CPU-only build

struct CudaGraph::Impl {};

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;

bool CudaGraph::captured() const {
  return false;
}

void CudaGraph::reset() {}

void CudaGraph::fail_captures_for_testing(bool) {}

void CudaGraph::release_all_for_abort() {}

void CudaGraph::capture(Device device, const std::function<void()>&) {
  throw Error(cat("CUDA graph: capture on ", device_name(device),
                  " needs the CUDA backend, and this build has none (configure with CUDA to build it)"));
}

void CudaGraph::replay() const {
  throw Error("CUDA graph: replay() before capture()");
}

#endif

}  // namespace byol
