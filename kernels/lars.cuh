// LARS over the online network's flat buffers on the GPU (You et al. 2017, as the official BYOL code
// chains it; the per-element step is math::lars_update, the trust ratio math::lars_trust_ratio).
//
// Two phases, no host synchronisation between them:
//   1. per-tensor sums (sum w^2, sum g^2, sum w*g) in double with one CUB segmented reduction over the
//      registry's tensors (|g + wd w|^2 = g^2 + 2 wd w.g + wd^2 w^2 then follows per tensor);
//   2. one update launch over the whole buffer: each element finds its tensor by binary search over the
//      segment table (kernels/launch.h's segment_of; gaps between tensors are left untouched), forms the
//      trust ratio from its tensor's sums and applies momentum, weight decay and the update.
// Launchers that need scratch memory (reductions) take it from cuda::DeviceBuffer, which is ordered on
// cuda::compute_stream(): pass that stream (every caller in the engine does).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

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
};

// The segment table as the kernels read it, one block of bytes: begins[S], ends[S] (int64), flags[S].
// Byol's Lars packs it once, keeps it on the device, and passes it to every step.
std::vector<uint8_t> lars_pack_segments(const LarsSegments& segments);

// Updates w and m (n elements: the whole flat buffer) in place; device_table is lars_pack_segments'
// bytes in device memory, for `segments` tensors. With trust_out (device memory, one double per
// segment) non-null, the trust ratio applied to each segment is written there on the device; nothing
// waits for the GPU and nothing is copied from the host.
void lars_step(float* w, const float* g, float* m, int64_t n, const void* device_table, int segments,
               const LarsHyper& hyper, double* trust_out, cudaStream_t stream);

// The same with a host table, uploaded (from pageable memory) on every call: for one-off use.
void lars_step(float* w, const float* g, float* m, int64_t n, const LarsSegments& segments,
               const LarsHyper& hyper, double* trust_out, cudaStream_t stream);

}  // namespace byol::kernels
