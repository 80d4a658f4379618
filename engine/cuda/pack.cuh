// Packs: V consecutive elements moved with 16-byte (or, for a 4- or 8-byte pack, one narrower) memory
// accesses, the widest a thread can issue. A warp of scalar float loads moves 128 bytes per instruction, of
// scalar bf16 loads 64; the memory-bound kernels that take bf16 activations or do index arithmetic per
// element (pooling, casts) run at a fraction of the copy bandwidth that way (elementwise_lab, H200,
// 2026-12-04: casts 60 %, max pool 30 % forward and 11 % backward). A pack is loaded and stored whole; the
// per-element math is the scalar kernel's, element by element, so the results are the same bits.
//
// kPack<T> is the pack of 16 bytes. A launcher takes the packed kernel only where every pointer it passes is
// aligned to its pack (packs_fit) and the packed dimension divides by kPack<T>; elsewhere the scalar kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace byol::kernels {

template <class T>
inline constexpr int kPack = static_cast<int>(16 / sizeof(T));

namespace detail {
template <int Bytes>
struct PackWord;  // the memory word of a pack: the widest access that divides it (at most 16 bytes)
template <>
struct PackWord<2> {  // a pack of one bf16: the scalar kernel's access
  using type = unsigned short;
};
template <>
struct PackWord<4> {
  using type = unsigned;
};
template <>
struct PackWord<8> {
  using type = uint2;
};
template <>
struct PackWord<16> {
  using type = uint4;
};
template <>
struct PackWord<32> {
  using type = uint4;
};
}  // namespace detail

template <class T, int V>
struct Pack {
  static constexpr int kBytes = static_cast<int>(sizeof(T)) * V;
  using Word = typename detail::PackWord<kBytes>::type;
  static constexpr int kWords = kBytes / static_cast<int>(sizeof(Word));
  union {
    Word word[kWords];
    T v[V];
  };
  __device__ Pack() : word{} {}
};

// p must be aligned to the pack (sizeof(T) * V bytes, or 16 for a 32-byte pack).
template <int V, class T>
__device__ __forceinline__ Pack<T, V> load_pack(const T* __restrict__ p) {
  Pack<T, V> r;
  const auto* w = reinterpret_cast<const typename Pack<T, V>::Word*>(p);
#pragma unroll
  for (int k = 0; k < Pack<T, V>::kWords; ++k) r.word[k] = w[k];
  return r;
}

template <int V, class T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const Pack<T, V>& r) {
  auto* w = reinterpret_cast<typename Pack<T, V>::Word*>(p);
#pragma unroll
  for (int k = 0; k < Pack<T, V>::kWords; ++k) w[k] = r.word[k];
}

// Whether p can be accessed in packs of V elements of its type.
template <int V, class T>
inline bool pack_aligned(const T* p) {
  constexpr uintptr_t bytes = sizeof(T) * V < 16 ? sizeof(T) * V : 16;
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace byol::kernels
