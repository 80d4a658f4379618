#include <cstring>
#include <cub/block/block_reduce.cuh>

#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/lars.cuh"
#include "engine/cuda/launch.h"
#include "engine/math/optimizers.h"

namespace byol::kernels {
namespace {

constexpr int kLarsThreads = 256;  // threads per chunk block: 64 elements each for a full chunk
constexpr int kLarsUnroll = 4;     // loads in flight per thread in the reduction

struct NormSums {
  double ww, uu;  // sum w^2 and sum (g + wd w)^2
};

struct AddNormSums {
  __device__ NormSums operator()(const NormSums& a, const NormSums& b) const {
    return {a.ww + b.ww, a.uu + b.uu};
  }
};

// The packed table's arrays (lars_pack_segments: int64 arrays first, so every array is aligned).
struct Table {
  const int64_t* begins;
  const int64_t* ends;
  const int64_t* chunk_first;
  const int32_t* chunk_segment;
  const uint8_t* flags;
};

Table unpack(const void* device_table, int segments, int chunks) {
  Table t;
  t.begins = static_cast<const int64_t*>(device_table);
  t.ends = t.begins + segments;
  t.chunk_first = t.ends + segments;
  t.chunk_segment = reinterpret_cast<const int32_t*>(t.chunk_first + segments + 1);
  t.flags = reinterpret_cast<const uint8_t*>(t.chunk_segment + chunks);
  return t;
}

struct Chunk {
  int segment;
  IndexRange range;
};

__device__ Chunk chunk_of_block(const Table& t) {
  const int c = static_cast<int>(blockIdx.x);
  const int s = t.chunk_segment[c];
  return {s, lars_chunk_range(t.begins[s], t.ends[s], c - t.chunk_first[s])};
}

// 1. One block per chunk: sum w^2 and sum (g + wd w)^2 in double (wd of the chunk's tensor); partial[chunk].
__global__ void __launch_bounds__(kLarsThreads)
    lars_chunk_sums_kernel(const float* __restrict__ w, const float* __restrict__ g, Table t,
                           double weight_decay, NormSums* __restrict__ partial) {
  const Chunk ch = chunk_of_block(t);
  const double wd = (t.flags[ch.segment] & kLarsNoWeightDecay) ? 0.0 : weight_decay;
  NormSums acc{0, 0};
  const int64_t end = ch.range.last;
  int64_t i = ch.range.first + threadIdx.x;
  // kLarsUnroll independent loads per thread before the arithmetic, then the tail one at a time.
  for (; i + (kLarsUnroll - 1) * kLarsThreads < end; i += kLarsUnroll * kLarsThreads) {
    float wv[kLarsUnroll], gv[kLarsUnroll];
#pragma unroll
    for (int u = 0; u < kLarsUnroll; ++u) {
      wv[u] = w[i + u * kLarsThreads];
      gv[u] = g[i + u * kLarsThreads];
    }
#pragma unroll
    for (int u = 0; u < kLarsUnroll; ++u) {
      const double wi = wv[u], ui = math::lars_decayed_gradient(gv[u], wv[u], wd);
      acc.ww += wi * wi;
      acc.uu += ui * ui;
    }
  }
  for (; i < end; i += kLarsThreads) {
    const double wi = w[i], ui = math::lars_decayed_gradient(g[i], w[i], wd);
    acc.ww += wi * wi;
    acc.uu += ui * ui;
  }
  using BlockReduce = cub::BlockReduce<NormSums, kLarsThreads>;
  __shared__ typename BlockReduce::TempStorage scratch;
  const NormSums total = BlockReduce(scratch).Reduce(acc, AddNormSums{});
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// 2. One thread per segment: its chunks' sums in chunk order (deterministic), then its trust ratio.
__global__ void lars_trust_kernel(Table t, int segments, const NormSums* __restrict__ partial, double eta,
                                  double* __restrict__ trust) {
  for (int64_t s = global_thread(); s < segments; s += grid_threads()) {
    const uint8_t f = t.flags[s];
    double r = 1.0;
    if (!(f & kLarsNoAdapt)) {
      NormSums sum{0, 0};
      for (int64_t c = t.chunk_first[s]; c < t.chunk_first[s + 1]; ++c) sum = AddNormSums{}(sum, partial[c]);
      r = math::lars_trust_ratio(sqrt(sum.ww), sqrt(sum.uu), eta);
    }
    trust[s] = r;
  }
}

// 3. One block per chunk: the update with the chunk's tensor's weight decay and trust ratio.
__global__ void __launch_bounds__(kLarsThreads)
    lars_chunk_update_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                             Table t, const double* __restrict__ trust, const float* __restrict__ lr_device,
                             float lr_arg, float weight_decay, float momentum) {
  const Chunk ch = chunk_of_block(t);
  const float lr = lr_device ? *lr_device : lr_arg;
  const float wd = (t.flags[ch.segment] & kLarsNoWeightDecay) ? 0.0f : weight_decay;
  const float r = static_cast<float>(trust[ch.segment]);
  for (int64_t i = ch.range.first + threadIdx.x; i < ch.range.last; i += kLarsThreads)
    math::lars_update(w[i], m[i], g[i], wd, r, lr, momentum);
}

}  // namespace

LarsTable lars_pack_segments(const LarsSegments& seg, int64_t n) {
  const size_t S = seg.begins.size();
  BYOL_CHECK(seg.ends.size() == S && seg.flags.size() == S,
             "lars_pack_segments: the segment table's begins, ends and flags differ in length");
  for (size_t s = 0; s < S; ++s) {
    BYOL_CHECK(seg.begins[s] >= 0 && seg.begins[s] <= seg.ends[s] && seg.ends[s] <= n &&
                   (s == 0 || seg.ends[s - 1] <= seg.begins[s]),
               "lars_pack_segments: segment ", s, " [", seg.begins[s], ", ", seg.ends[s],
               ") is not sorted, disjoint and inside the buffer of ", n, " elements");
  }
  const std::vector<int64_t> first = lars_chunk_first(seg.begins, seg.ends);
  const int64_t chunks = first.back();
  BYOL_CHECK(S <= 0x7fffffff && chunks <= 0x7fffffff, "lars_pack_segments: ", S, " tensors in ", chunks,
             " chunks is more than a launch takes");
  std::vector<int32_t> chunk_segment(static_cast<size_t>(chunks));
  for (size_t s = 0; s < S; ++s)
    for (int64_t c = first[s]; c < first[s + 1]; ++c)
      chunk_segment[static_cast<size_t>(c)] = static_cast<int32_t>(s);

  LarsTable t;
  t.segments = static_cast<int>(S);
  t.chunks = static_cast<int>(chunks);
  const size_t i64 = sizeof(int64_t);
  t.bytes.resize((3 * S + 1) * i64 + static_cast<size_t>(chunks) * sizeof(int32_t) + S);
  uint8_t* p = t.bytes.data();
  const auto put = [&p](const void* src, size_t bytes) {
    if (bytes > 0) std::memcpy(p, src, bytes);
    p += bytes;
  };
  put(seg.begins.data(), S * i64);
  put(seg.ends.data(), S * i64);
  put(first.data(), (S + 1) * i64);
  put(chunk_segment.data(), chunk_segment.size() * sizeof(int32_t));
  put(seg.flags.data(), S);
  return t;
}

void lars_step(float* w, const float* g, float* m, const void* device_table, int segments, int chunks,
               const LarsHyper& h, double* trust_out, cudaStream_t stream) {
  if (segments == 0) return;
  const Table t = unpack(device_table, segments, chunks);
  cuda::DeviceBuffer trust_scratch;  // where the trust ratios go when the caller does not keep them
  if (!trust_out) trust_scratch.reserve(static_cast<size_t>(segments) * sizeof(double));
  double* trust = trust_out ? trust_out : trust_scratch.as<double>();
  cuda::DeviceBuffer partial(static_cast<size_t>(chunks > 0 ? chunks : 1) * sizeof(NormSums));
  if (chunks > 0) {
    lars_chunk_sums_kernel<<<chunks, kLarsThreads, 0, stream>>>(w, g, t, h.weight_decay,
                                                                partial.as<NormSums>());
    BYOL_CUDA_CHECK_LAUNCH();
  }
  lars_trust_kernel<<<grid_1d(segments), kThreads, 0, stream>>>(t, segments, partial.as<NormSums>(), h.eta,
                                                                trust);
  BYOL_CUDA_CHECK_LAUNCH();
  if (chunks > 0) {
    lars_chunk_update_kernel<<<chunks, kLarsThreads, 0, stream>>>(
        w, g, m, t, trust, h.lr_device, static_cast<float>(h.lr), static_cast<float>(h.weight_decay),
        static_cast<float>(h.momentum));
    BYOL_CUDA_CHECK_LAUNCH();
  }
}

void lars_step(float* w, const float* g, float* m, int64_t n, const LarsSegments& seg, const LarsHyper& h,
               double* trust_out, cudaStream_t stream) {
  const LarsTable table = lars_pack_segments(seg, n);
  if (table.segments == 0) return;
  cuda::DeviceBuffer device(table.bytes.size());
  BYOL_CUDA_CHECK(
      cudaMemcpyAsync(device.get(), table.bytes.data(), table.bytes.size(), cudaMemcpyHostToDevice, stream));
  lars_step(w, g, m, device.get(), table.segments, table.chunks, h, trust_out, stream);
}

}  // namespace byol::kernels
