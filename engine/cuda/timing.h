// Timing for the kernel labs (benchmarks/*_lab.cu) and benchmarks: CUDA events on the compute stream,
// with the L2 cache flushed before every repeat (a memset of a buffer twice the L2 size), so each repeat
// reads its inputs from HBM as the kernel does inside a training step; and the device-to-device copy
// bandwidth of this GPU, the yardstick a memory-bound kernel's GB/s is read against.
#pragma once

#include <functional>

namespace byol::cuda {

struct Timing {
  double median_ms = 0, min_ms = 0;
};

// Runs fn once to warm up, then `repeats` times, each after an L2 flush; times only fn.
Timing time_on_compute_stream(const std::function<void()>& fn, int repeats = 20);

// GB/s of a cudaMemcpyAsync device-to-device of `bytes` (counting read + write), timed as above.
double device_copy_bandwidth_gbs(size_t bytes = size_t(256) << 20);

// One line: "<name>  <ms> ms  <GB/s> GB/s  (<percent> % of the copy bandwidth)".
void print_timing(const char* name, const Timing& t, double bytes_moved, double copy_gbs);

}  // namespace byol::cuda
