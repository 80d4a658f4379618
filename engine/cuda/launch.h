// Launch geometry of the handwritten kernels, as host-callable arithmetic so the CPU tests can check
// that every grid covers its index range exactly once (tests/test_cuda_ops.cpp, untagged cases).
//
// Conventions: 1-D kernels use grid-stride loops over n elements with at most kMaxBlocks blocks; row
// kernels use one warp per row; the per-channel reductions of batch norm use 32-channel x 8-row
// blocks over a grid of channel tiles x row chunks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/common.h"

namespace byol::kernels {

constexpr int kThreads = 256;  // threads per block of the 1-D and row kernels
constexpr int kWarp = 32;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride beyond this (enough to fill any current GPU)

// Blocks for n elements handled `per_thread` at a time by kThreads-thread blocks.
inline unsigned grid_1d(int64_t n, int64_t per_thread = 1) {
  const int64_t items = (n + per_thread - 1) / per_thread;
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

// Blocks for `rows` rows, one warp per row.
inline unsigned grid_rows(int64_t rows) {
  const int64_t warps_per_block = kThreads / kWarp;
  return static_cast<unsigned>(
      std::clamp<int64_t>((rows + warps_per_block - 1) / warps_per_block, 1, kMaxBlocks));
}

// Batch-norm reduction grid over an [M, C] matrix: tiles of kBnTileC channels (one per lane, so a warp
// reads 32 consecutive floats of a row) and chunks of rows_per_chunk rows (a multiple of kBnTileRows,
// the block's second dimension). Aims at about kBnTargetBlocks blocks so every SM has work; the rows per
// thread are not capped: at ResNet-50's stem (M = 3.2e6 rows per view, C = 64) a thread's fp32 partial
// sum takes 784 values, which a simulation of this scheme (2026-12-05) put at <= 6e-8 relative error for the
// variance and <= 3e-5 for the backward sums at channel means of 100, inside every test's tolerance.
constexpr int kBnTileC = 32;
constexpr int kBnTileRows = 8;
constexpr int64_t kBnTargetBlocks = 1024;
// Tiles of kBnTileC channels over C, and of kBnTileRows rows over M (at least one each).
// With packs (channels_per_thread V > 1, engine/cuda/batch_norm.cu), a tile is kBnTileC x V channels: each
// lane takes V consecutive channels.
inline int64_t bn_channel_tiles(int64_t C, int64_t channels_per_thread = 1) {
  const int64_t tile = kBnTileC * channels_per_thread;
  return std::max<int64_t>(1, (C + tile - 1) / tile);
}
inline int64_t bn_row_tiles(int64_t M) {
  return std::max<int64_t>(1, (M + kBnTileRows - 1) / kBnTileRows);
}
struct BnGrid {
  int64_t channel_tiles;
  int64_t row_chunks;
  int64_t rows_per_chunk;
};
inline BnGrid bn_grid(int64_t M, int64_t C, int64_t channels_per_thread = 1) {
  BnGrid g;
  g.channel_tiles = bn_channel_tiles(C, channels_per_thread);
  const int64_t max_chunks = bn_row_tiles(M);
  const int64_t want = std::clamp<int64_t>(kBnTargetBlocks / g.channel_tiles, 1, max_chunks);
  int64_t rows = (M + want - 1) / want;
  rows = std::max<int64_t>(kBnTileRows, (rows + kBnTileRows - 1) / kBnTileRows * kBnTileRows);
  g.rows_per_chunk = rows;
  g.row_chunks = std::max<int64_t>(1, (M + rows - 1) / rows);
  return g;
}

// Batch norm's elementwise passes over [M, C] (normalise, the fused epilogue, dx): the same 32-channel x
// 8-row blocks, each thread one channel (its per-channel values loaded once, no index division per element)
// and the rows ty + 8 * (blockIdx.y + k * row_blocks), k = 0, 1, ...; at most about kMaxBlocks blocks. The
// 1-D grid-stride version it replaced spent a 64-bit `i % C` per element (2026-12-05; the lab times both).
struct BnRowsGrid {
  int64_t channel_tiles;
  int64_t row_blocks;
};
inline BnRowsGrid bn_rows_grid(int64_t M, int64_t C, int64_t channels_per_thread = 1) {
  BnRowsGrid g;
  g.channel_tiles = bn_channel_tiles(C, channels_per_thread);
  const int64_t cap = std::max<int64_t>(1, kMaxBlocks / g.channel_tiles);
  g.row_blocks = std::min<int64_t>({bn_row_tiles(M), cap, 65535});
  return g;
}

// Pooling windows: the output rows p whose window [p * stride - pad, p * stride - pad + kernel) contains
// input row h, as the half-open range [first, last). Used by max-pool backward, which gathers into each
// input element from the windows that cover it (deterministic, no atomics).
// The index type I is the kernel's (int32_t where every index fits: a 64-bit division is many instructions).
template <class I>
struct IndexRangeOf {
  I first, last;
};
using IndexRange = IndexRangeOf<int64_t>;
template <class I>
BYOL_HD IndexRangeOf<I> pool_windows_covering(I h, I kernel, I stride, I pad, I P) {
  // p * stride - pad <= h  and  p * stride - pad + kernel > h
  const I hi = h + pad;              // p <= hi / stride
  const I lo_num = hi - kernel + 1;  // p >= lo_num / stride (ceil)
  I first = lo_num <= 0 ? 0 : (lo_num + stride - 1) / stride;
  I last = hi / stride + 1;
  if (last > P) last = P;
  if (first > last) first = last;
  return {first, last};
}

// LARS segments: the registry's tensors as half-open element ranges [begin, end) of the flat buffer,
// sorted and disjoint (alignment gaps lie between them). segment_of returns the segment holding
// element i, or -1 for a gap.
BYOL_HD int segment_of(const int64_t* begins, const int64_t* ends, int segments, int64_t i) {
  int lo = 0, hi = segments;  // first segment with begin > i, by binary search
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (begins[mid] <= i) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const int s = lo - 1;
  return (s >= 0 && i < ends[s]) ? s : -1;
}

// LARS chunks: the LARS kernels give each block one chunk of at most `chunk` elements of one segment, so a
// tensor of millions of floats is reduced and updated by many blocks (one block per tensor ran at 6 % of
// the copy bandwidth on an H200, 2026-12-04) and no element searches for its tensor. Segment s owns the
// chunks [first[s], first[s + 1]); its chunk k covers [begins[s] + k chunk, min(that + chunk, ends[s])).
// An empty segment has no chunk.
//
// kLarsChunk = 4096: ResNet-50's 23.5e6 floats make 5,833 chunks, 5.5 waves of the 1,056 update blocks
// an H100 or H200 holds at once (132 SMs x 8 blocks of 256 threads at 32 registers; the sums kernel, at 40
// registers, 6 blocks per SM: 7.4 waves), so the last, partly idle wave costs at most a sixth of the time.
// Chunks of 16384 (version 2) made 1,541 blocks, 1.35 update waves, the second a third full, which fits the
// 70 % of the copy bandwidth version 2 measured (H200, 2026-12-04). lars_lab times both sizes.
constexpr int64_t kLarsChunk = 4096;
inline std::vector<int64_t> lars_chunk_first(const std::vector<int64_t>& begins,
                                             const std::vector<int64_t>& ends, int64_t chunk = kLarsChunk) {
  std::vector<int64_t> first(begins.size() + 1, 0);
  for (size_t s = 0; s < begins.size(); ++s)
    first[s + 1] = first[s] + (std::max<int64_t>(0, ends[s] - begins[s]) + chunk - 1) / chunk;
  return first;
}
// The range of chunk k (counted from the segment's first chunk) of a segment [begin, end).
BYOL_HD IndexRange lars_chunk_range(int64_t begin, int64_t end, int64_t k, int64_t chunk) {
  const int64_t b = begin + k * chunk;
  return {b, b + chunk < end ? b + chunk : end};
}

}  // namespace byol::kernels
