#include "engine/cuda/timing.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"

namespace byol::cuda {
namespace {

void flush_l2(DeviceBuffer& scratch, cudaStream_t s) {
  BYOL_CUDA_CHECK(cudaMemsetAsync(scratch.get(), 0, scratch.bytes(), s));
}

size_t l2_flush_bytes() {
  int l2 = 0;
  BYOL_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, current_device()));
  return std::max<size_t>(2 * static_cast<size_t>(l2), size_t(64) << 20);
}

}  // namespace

Timing time_on_compute_stream(const std::function<void()>& fn, int repeats) {
  cudaStream_t s = compute_stream();
  DeviceBuffer scratch(l2_flush_bytes());
  cudaEvent_t start, stop;
  BYOL_CUDA_CHECK(cudaEventCreate(&start));
  BYOL_CUDA_CHECK(cudaEventCreate(&stop));
  fn();  // warm-up: plans, algorithm searches, pool growth
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    flush_l2(scratch, s);
    BYOL_CUDA_CHECK(cudaEventRecord(start, s));
    fn();
    BYOL_CUDA_CHECK(cudaEventRecord(stop, s));
    BYOL_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    BYOL_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  BYOL_CUDA_CHECK(cudaEventDestroy(start));
  BYOL_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

double device_copy_bandwidth_gbs(size_t bytes) {
  DeviceBuffer src(bytes), dst(bytes);
  BYOL_CUDA_CHECK(cudaMemsetAsync(src.get(), 1, bytes, compute_stream()));
  const Timing t = time_on_compute_stream([&] {
    BYOL_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, compute_stream()));
  });
  return 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e-3) / 1e9;
}

void print_timing(const char* name, const Timing& t, double bytes_moved, double copy_gbs) {
  const double gbs = bytes_moved / (t.median_ms * 1e-3) / 1e9;
  std::printf("%-34s %9.4f ms (min %9.4f)  %8.1f GB/s  (%5.1f %% of the copy bandwidth)\n", name, t.median_ms,
              t.min_ms, gbs, 100.0 * gbs / copy_gbs);
}

}  // namespace byol::cuda
