// PhaseClock (engine/phase_clock.h): host timestamps on the CPU, CUDA events on a GPU.
#include "engine/phase_clock.h"

#include <chrono>

#include "engine/common.h"

#if BYOL_WITH_CUDA
#include <cuda_runtime_api.h>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#endif

namespace byol {

// A window is a list of points: start, then one per mark, each the end of the named phase. On a GPU a
// point is an event recorded on the compute stream; events are pooled and reused across windows.
struct PhaseClock::Impl {
  struct Point {
    int phase = -1;  // index into names; -1: the window's start
    std::chrono::steady_clock::time_point host;
#if BYOL_WITH_CUDA
    cudaEvent_t event = nullptr;
#endif
  };
  std::vector<std::string> names;
  std::vector<double> seconds;  // per name, summed over closed windows
  std::vector<Point> points;    // the open window
#if BYOL_WITH_CUDA
  std::vector<cudaEvent_t> pool;
  size_t used = 0;
  cudaEvent_t next_event() {
    if (used == pool.size()) {
      cudaEvent_t e;
      BYOL_CUDA_CHECK(cudaEventCreate(&e));
      pool.push_back(e);
    }
    return pool[used++];
  }
#endif
  int index_of(const char* phase) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == phase) return static_cast<int>(i);
    names.emplace_back(phase);
    seconds.push_back(0);
    return static_cast<int>(names.size() - 1);
  }
};

PhaseClock::PhaseClock(Device device) : device_(device), impl_(std::make_unique<Impl>()) {
#if !BYOL_WITH_CUDA
  BYOL_CHECK(device.is_cpu(), "PhaseClock: ", device_name(device), " needs a build with the CUDA backend");
#endif
}

PhaseClock::~PhaseClock() {
#if BYOL_WITH_CUDA
  for (cudaEvent_t e : impl_->pool) cudaEventDestroy(e);
#endif
}

// A point at "now": the host time and, on a GPU, an event recorded on the compute stream.
void PhaseClock::push(int phase) {
  Impl::Point p;
  p.phase = phase;
  p.host = std::chrono::steady_clock::now();
#if BYOL_WITH_CUDA
  if (device_.is_cuda()) {
    p.event = impl_->next_event();
    BYOL_CUDA_CHECK(cudaEventRecord(p.event, cuda::compute_stream()));
  }
#endif
  impl_->points.push_back(p);
}

void PhaseClock::start() {
  push(-1);
}

void PhaseClock::mark(const char* phase) {
  BYOL_CHECK(!impl_->points.empty(), "PhaseClock::mark(\"", phase, "\"): no window is open (call start())");
  push(impl_->index_of(phase));
}

std::vector<std::pair<std::string, double>> PhaseClock::totals() {
  auto& pts = impl_->points;
#if BYOL_WITH_CUDA
  if (device_.is_cuda() && !pts.empty()) BYOL_CUDA_CHECK(cudaEventSynchronize(pts.back().event));
#endif
  for (size_t i = 1; i < pts.size(); ++i) {
    double s = std::chrono::duration<double>(pts[i].host - pts[i - 1].host).count();
#if BYOL_WITH_CUDA
    if (device_.is_cuda()) {
      float ms = 0;
      BYOL_CUDA_CHECK(cudaEventElapsedTime(&ms, pts[i - 1].event, pts[i].event));
      s = ms / 1e3;
    }
#endif
    if (pts[i].phase >= 0) impl_->seconds[static_cast<size_t>(pts[i].phase)] += s;  // not across a start()
  }
  pts.clear();
#if BYOL_WITH_CUDA
  impl_->used = 0;
#endif
  std::vector<std::pair<std::string, double>> out;
  for (size_t i = 0; i < impl_->names.size(); ++i) out.emplace_back(impl_->names[i], impl_->seconds[i]);
  return out;
}

void PhaseClock::reset() {
  impl_->points.clear();
  impl_->names.clear();
  impl_->seconds.clear();
#if BYOL_WITH_CUDA
  impl_->used = 0;
#endif
}

}  // namespace byol
