// LARS over the online network's flat buffers on the GPU (You et al. 2017, as the official BYOL code
// chains it; the per-element step is math::lars_update, the trust ratio math::lars_trust_ratio).
//
// Three launches, no host synchronisation between them, deterministic (fixed summation order):
//   1. per-chunk sums (sum w^2, sum (g + wd w)^2 with math::lars_decayed_gradient, as the CPU sums them) in
//      double, one block per chunk of at most kLarsChunk elements of one tensor (engine/cuda/launch.h:
//      lars_chunk_first, lars_chunk_range), read in packs of 4 floats;
//   2. per tensor, its chunks' sums (lane l of one warp adds chunks l, l + 32, ...; then a fixed butterfly),
//      then its trust ratio;
//   3. the update, one block per chunk again, in packs: momentum, weight decay and the step with its
//      tensor's trust ratio. Gaps between tensors are never touched.
// The first version (2026-11) reduced each tensor with one block (a CUB segmented reduction) and found
// each element's tensor by binary search; the chunks replaced it (the figures: docs/benchmarks.md, "Second
// GPU run").
// Launchers that need scratch memory take it from cuda::DeviceBuffer, which is ordered on
// cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "engine/cuda/launch.h"

namespace byol::kernels {

constexpr uint8_t kLarsNoWeightDecay = 1u << 0;
constexpr uint8_t kLarsNoAdapt = 1u << 1;

// The registry's tensors as sorted, disjoint ranges [begins[s], ends[s]) of the flat buffer.
struct LarsSegments {
  std::vector<int64_t> begins, ends;
  std::vector<uint8_t> flags;  // kLarsNoWeightDecay | kLarsNoAdapt
};

struct LarsHyper {
  double lr, weight_decay, momentum, eta;
  // When non-null, the update kernel reads the learning rate (f32) here when it runs instead of taking lr:
  // a captured CUDA graph replays with the value written before each launch.
  const float* lr_device = nullptr;
};

// The segment table as the kernels read it, one block of bytes: begins[S], ends[S], chunk_first[S + 1]
// (int64), chunk_segment[chunks] (int32), flags[S]. Byol's Lars packs it once, keeps it on the device, and
// passes it to every step with its counts.
struct LarsTable {
  std::vector<uint8_t> bytes;
  int segments = 0;
  int chunks = 0;
  int64_t chunk = kLarsChunk;  // elements per full chunk
};
// Checks that the segments are sorted, disjoint and inside [0, n). `chunk` other than kLarsChunk is for
// lars_lab, which times the chunk size of version 2 next to it.
LarsTable lars_pack_segments(const LarsSegments& segments, int64_t n, int64_t chunk = kLarsChunk);

// Updates the tensors of w and m in place (the flat buffers; gaps untouched); device_table is
// lars_pack_segments' bytes in device memory with its counts. With trust_out (device memory, one double
// per segment) non-null, the trust ratio applied to each segment is written there on the device; nothing
// waits for the GPU and nothing is copied from the host.
void lars_step(float* w, const float* g, float* m, const void* device_table, int segments, int chunks,
               int64_t chunk, const LarsHyper& hyper, double* trust_out, cudaStream_t stream);

// The same with a host table, uploaded (from pageable memory) on every call: for one-off use.
void lars_step(float* w, const float* g, float* m, int64_t n, const LarsSegments& segments,
               const LarsHyper& hyper, double* trust_out, cudaStream_t stream);

// Lab switch: with `on`, both chunk kernels read and write one float at a time (version 2's access)
// instead of packs of 4. The same sums in another order, the same update bits.
void force_unpacked_lars(bool on);

}  // namespace byol::kernels
