#include <cstring>
#include <cub/block/block_reduce.cuh>

#include "engine/cuda/common.cuh"
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/lars.cuh"
#include "engine/cuda/launch.h"
#include "engine/cuda/pack.cuh"
#include "engine/math/optimizers.h"

namespace byol::kernels {
namespace {

constexpr int kLarsThreads = 256;  // threads per chunk block: 16 elements each for a full chunk
constexpr int kLarsUnroll = 4;     // packs (or elements) loaded ahead of the arithmetic per thread
constexpr int kLarsPack = kPack<float>;

bool g_force_unpacked = false;  // force_unpacked_lars

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
  int64_t chunk;  // elements per full chunk
};

Table unpack(const void* device_table, int segments, int chunks, int64_t chunk) {
  Table t;
  t.begins = static_cast<const int64_t*>(device_table);
  t.ends = t.begins + segments;
  t.chunk_first = t.ends + segments;
  t.chunk_segment = reinterpret_cast<const int32_t*>(t.chunk_first + segments + 1);
  t.flags = reinterpret_cast<const uint8_t*>(t.chunk_segment + chunks);
  t.chunk = chunk;
  return t;
}

struct Chunk {
  int segment;
  IndexRange range;
};

__device__ Chunk chunk_of_block(const Table& t) {
  const int c = static_cast<int>(blockIdx.x);
  const int s = t.chunk_segment[c];
  return {s, lars_chunk_range(t.begins[s], t.ends[s], c - t.chunk_first[s], t.chunk)};
}

// Both chunk kernels take a chunk's elements in packs of V: the packs [0, packs) from its first element,
// then the tail of fewer than V one at a time. V = 1 where packs are off or a pointer at the chunk's start is
// not aligned to a pack (the registry starts tensors at multiples of 16 elements and the chunk is a
// multiple of 4, so in training every chunk takes packs); the choice is per block, the same for its threads.

__device__ __forceinline__ void add_norm_terms(NormSums& acc, float w, float g, double wd) {
  const double wi = w, ui = math::lars_decayed_gradient(g, w, wd);
  acc.ww += wi * wi;
  acc.uu += ui * ui;
}

// Sum w^2 and (g + wd w)^2 over [first, last) in packs of V, kLarsUnroll packs per thread loaded before
// their arithmetic; each thread adds its elements in a fixed order (deterministic).
template <int V>
__device__ NormSums chunk_norm_sums(const float* __restrict__ w, const float* __restrict__ g, int64_t first,
                                    int64_t last, double wd) {
  NormSums acc{0, 0};
  const int64_t packs = (last - first) / V;
  const float* wc = w + first;
  const float* gc = g + first;
  int64_t p = threadIdx.x;
  for (; p + (kLarsUnroll - 1) * kLarsThreads < packs; p += kLarsUnroll * kLarsThreads) {
    Pack<float, V> wv[kLarsUnroll], gv[kLarsUnroll];
#pragma unroll
    for (int u = 0; u < kLarsUnroll; ++u) {
      wv[u] = load_pack<V>(wc + (p + u * kLarsThreads) * V);
      gv[u] = load_pack<V>(gc + (p + u * kLarsThreads) * V);
    }
#pragma unroll
    for (int u = 0; u < kLarsUnroll; ++u)
#pragma unroll
      for (int k = 0; k < V; ++k) add_norm_terms(acc, wv[u].v[k], gv[u].v[k], wd);
  }
  for (; p < packs; p += kLarsThreads) {
    const Pack<float, V> wv = load_pack<V>(wc + p * V), gv = load_pack<V>(gc + p * V);
#pragma unroll
    for (int k = 0; k < V; ++k) add_norm_terms(acc, wv.v[k], gv.v[k], wd);
  }
  for (int64_t i = first + packs * V + threadIdx.x; i < last; i += kLarsThreads)
    add_norm_terms(acc, w[i], g[i], wd);
  return acc;
}

// 1. One block per chunk: sum w^2 and sum (g + wd w)^2 in double (wd of the chunk's tensor); partial[chunk].
__global__ void __launch_bounds__(kLarsThreads)
    lars_chunk_sums_kernel(const float* __restrict__ w, const float* __restrict__ g, Table t,
                           double weight_decay, bool packed, NormSums* __restrict__ partial) {
  const Chunk ch = chunk_of_block(t);
  const double wd = (t.flags[ch.segment] & kLarsNoWeightDecay) ? 0.0 : weight_decay;
  const int64_t first = ch.range.first, last = ch.range.last;
  const NormSums acc = packed && pack_aligned<kLarsPack>(w + first, g + first)
                           ? chunk_norm_sums<kLarsPack>(w, g, first, last, wd)
                           : chunk_norm_sums<1>(w, g, first, last, wd);
  using BlockReduce = cub::BlockReduce<NormSums, kLarsThreads>;
  __shared__ typename BlockReduce::TempStorage scratch;
  const NormSums total = BlockReduce(scratch).Reduce(acc, AddNormSums{});
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// 2. One warp per segment: lane l adds the chunks l, l + 32, ... of its segment in order, then a fixed
// butterfly across the lanes (deterministic), then the trust ratio. One thread adding every chunk in turn
// would wait on each load: ResNet-50's largest tensor (2.36e6 floats) has 576 chunks of 4096.
__global__ void lars_trust_kernel(Table t, int segments, const NormSums* __restrict__ partial, double eta,
                                  double* __restrict__ trust) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t s = global_warp(); s < segments; s += grid_warps()) {
    const uint8_t f = t.flags[s];
    double r = 1.0;
    if (!(f & kLarsNoAdapt)) {  // the same for the whole warp
      NormSums sum{0, 0};
      for (int64_t c = t.chunk_first[s] + lane; c < t.chunk_first[s + 1]; c += kWarp)
        sum = AddNormSums{}(sum, partial[c]);
      sum.ww = warp_sum(sum.ww);
      sum.uu = warp_sum(sum.uu);
      r = math::lars_trust_ratio(sqrt(sum.ww), sqrt(sum.uu), eta);
    }
    if (lane == 0) trust[s] = r;
  }
}

// The update over [first, last) in packs of V (the per-element step is math::lars_update either way).
template <int V>
__device__ void chunk_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                             int64_t first, int64_t last, float wd, float r, float lr, float momentum) {
  const int64_t packs = (last - first) / V;
  for (int64_t p = threadIdx.x; p < packs; p += kLarsThreads) {
    const int64_t i = first + p * V;
    Pack<float, V> wv = load_pack<V>(static_cast<const float*>(w + i));
    Pack<float, V> mv = load_pack<V>(static_cast<const float*>(m + i));
    const Pack<float, V> gv = load_pack<V>(g + i);
#pragma unroll
    for (int k = 0; k < V; ++k) math::lars_update(wv.v[k], mv.v[k], gv.v[k], wd, r, lr, momentum);
    store_pack<V>(w + i, wv);
    store_pack<V>(m + i, mv);
  }
  for (int64_t i = first + packs * V + threadIdx.x; i < last; i += kLarsThreads)
    math::lars_update(w[i], m[i], g[i], wd, r, lr, momentum);
}

// 3. One block per chunk: the update with the chunk's tensor's weight decay and trust ratio.
__global__ void __launch_bounds__(kLarsThreads)
    lars_chunk_update_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                             Table t, const double* __restrict__ trust, const float* __restrict__ lr_device,
                             float lr_arg, float weight_decay, float momentum, bool packed) {
  const Chunk ch = chunk_of_block(t);
  const float lr = lr_device ? *lr_device : lr_arg;
  const float wd = (t.flags[ch.segment] & kLarsNoWeightDecay) ? 0.0f : weight_decay;
  const float r = static_cast<float>(trust[ch.segment]);
  const int64_t first = ch.range.first, last = ch.range.last;
  if (packed && pack_aligned<kLarsPack>(w + first, g + first, m + first)) {
    chunk_update<kLarsPack>(w, g, m, first, last, wd, r, lr, momentum);
  } else {
    chunk_update<1>(w, g, m, first, last, wd, r, lr, momentum);
  }
}

}  // namespace

void force_unpacked_lars(bool on) {
  g_force_unpacked = on;
}

LarsTable lars_pack_segments(const LarsSegments& seg, int64_t n, int64_t chunk) {
  BYOL_CHECK(chunk > 0, "lars_pack_segments: chunks of ", chunk, " elements (expected at least one)");
  const size_t S = seg.begins.size();
  BYOL_CHECK(seg.ends.size() == S && seg.flags.size() == S,
             "lars_pack_segments: the segment table's begins, ends and flags differ in length");
  for (size_t s = 0; s < S; ++s) {
    BYOL_CHECK(seg.begins[s] >= 0 && seg.begins[s] <= seg.ends[s] && seg.ends[s] <= n &&
                   (s == 0 || seg.ends[s - 1] <= seg.begins[s]),
               "lars_pack_segments: segment ", s, " [", seg.begins[s], ", ", seg.ends[s],
               ") is not sorted, disjoint and inside the buffer of ", n, " elements");
  }
  const std::vector<int64_t> first = lars_chunk_first(seg.begins, seg.ends, chunk);
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
  t.chunk = chunk;
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
               int64_t chunk, const LarsHyper& h, double* trust_out, cudaStream_t stream) {
  if (segments == 0) return;
  const Table t = unpack(device_table, segments, chunks, chunk);
  const bool packed = !g_force_unpacked;
  cuda::DeviceBuffer trust_scratch;  // where the trust ratios go when the caller does not keep them
  if (!trust_out) trust_scratch.reserve(static_cast<size_t>(segments) * sizeof(double));
  double* trust = trust_out ? trust_out : trust_scratch.as<double>();
  cuda::DeviceBuffer partial(static_cast<size_t>(chunks > 0 ? chunks : 1) * sizeof(NormSums));
  if (chunks > 0) {
    lars_chunk_sums_kernel<<<chunks, kLarsThreads, 0, stream>>>(w, g, t, h.weight_decay, packed,
                                                                partial.as<NormSums>());
    BYOL_CUDA_CHECK_LAUNCH();
  }
  lars_trust_kernel<<<grid_rows(segments), kThreads, 0, stream>>>(t, segments, partial.as<NormSums>(), h.eta,
                                                                  trust);
  BYOL_CUDA_CHECK_LAUNCH();
  if (chunks > 0) {
    lars_chunk_update_kernel<<<chunks, kLarsThreads, 0, stream>>>(
        w, g, m, t, trust, h.lr_device, static_cast<float>(h.lr), static_cast<float>(h.weight_decay),
        static_cast<float>(h.momentum), packed);
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
  lars_step(w, g, m, device.get(), table.segments, table.chunks, table.chunk, h, trust_out, stream);
}

}  // namespace byol::kernels
