// Packs: V consecutive elements moved with 16-byte (or, for a 4- or 8-byte pack, one narrower) memory
// accesses, the widest a thread can issue. A warp of scalar float loads moves 128 bytes per instruction, of
// scalar bf16 loads 64; the memory-bound kernels that take bf16 activations or do index arithmetic per
// element (pooling, casts) run at a fraction of the copy bandwidth that way (elementwise_lab, H200,
// 2026-12-04: casts 60 %, max pool 30 % forward and 11 % backward). A pack is loaded and stored whole; the
// per-element math is the scalar kernel's, element by element, so the results are the same bits.
//
// kPack<T> is the pack of 16 bytes. A launcher takes the packed kernel only where every pointer it passes is
// aligned to its pack (pack_aligned) and the packed dimension divides by kPack<T>; elsewhere the scalar
// kernel (with_pack launches either).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace byol::kernels {

template <class T>
inline constexpr int kPack = static_cast<int>(16 / sizeof(T));

namespace detail {
template <int Bytes>
struct PackWord;  // the memory word of a pack: the widest access that divides it (at most 16 bytes)
template <>
struct PackWord<2> {  // a pack of one bf16
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

// Stores go through PTX: left to the compiler, a pack's store was split back into one store per element
// wherever the address was not provably 16-byte aligned to it (the batch-norm passes' r * C + c; nvcc 13,
// 2026-12-05), and the vector access is the point. Global memory only (the address goes through
// __cvta_generic_to_global). No "memory" clobber: no kernel reads back what it stored through a pack.
__device__ __forceinline__ void store_word(void* p, uint4 w) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(__cvta_generic_to_global(p)), "r"(w.x),
               "r"(w.y), "r"(w.z), "r"(w.w));
}
__device__ __forceinline__ void store_word(void* p, uint2 w) {
  asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(__cvta_generic_to_global(p)), "r"(w.x), "r"(w.y));
}
__device__ __forceinline__ void store_word(void* p, unsigned w) {
  asm volatile("st.global.b32 [%0], %1;" ::"l"(__cvta_generic_to_global(p)), "r"(w));
}
__device__ __forceinline__ void store_word(void* p, unsigned short w) {
  asm volatile("st.global.b16 [%0], %1;" ::"l"(__cvta_generic_to_global(p)), "h"(w));
}

// A pack of one element is a plain store, so V = 1 compiles as the element-by-element kernels always did
// (the compiler may unroll their loops, which it does not around the stores above).
template <int V, class T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const Pack<T, V>& r) {
  if constexpr (V == 1) {
    *p = r.v[0];
  } else {
    auto* w = reinterpret_cast<typename Pack<T, V>::Word*>(p);
#pragma unroll
    for (int k = 0; k < Pack<T, V>::kWords; ++k) store_word(w + k, r.word[k]);
  }
}

// Whether every pointer can be accessed in packs of V elements of its own type (aligned to the pack's
// bytes, at most 16).
template <int V, class... T>
__host__ __device__ inline bool pack_aligned(const T*... p) {
  return ((reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V < 16 ? sizeof(T) * V : 16) == 0) && ...);
}

// Runs launch(std::integral_constant<int, V>{}) with V = kPack<T> where `packed`, else V = 1: one launch
// site per launcher for both versions of its kernel.
template <class T, class Launch>
void with_pack(bool packed, Launch&& launch) {
  if (packed) {
    launch(std::integral_constant<int, kPack<T>>{});
  } else {
    launch(std::integral_constant<int, 1>{});
  }
}

}  // namespace byol::kernels
