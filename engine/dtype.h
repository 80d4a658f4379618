// Element types and devices.
//
// bf16 is stored as its upper 16 bits of an IEEE float32; conversion from float rounds to nearest even
// (NaN stays NaN), the same rule CUDA's __float2bfloat16_rn uses, so host and device casts agree.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <type_traits>

#include "engine/common.h"

namespace byol {

enum class DType : uint8_t { f32, f64, bf16, u8, i32, i64 };

const char* dtype_name(DType t);
size_t dtype_size(DType t);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16;
}
// The dtype an op computes in for inputs of dtype t, and of its float parameters (bf16 -> f32).
inline DType compute_dtype(DType t) {
  return t == DType::bf16 ? DType::f32 : t;
}
inline std::ostream& operator<<(std::ostream& os, DType t) {
  return os << dtype_name(t);
}

struct bf16 {
  uint16_t bits = 0;
};

BYOL_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

BYOL_HD bf16 float_to_bf16(float f) {
  // Branch-free, so loops of conversions vectorise (im2col and the casts convert tens of MB per step).
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest, ties to even
  const uint32_t quiet_nan = (u >> 16) | 0x0040u;                   // NaN: keep it quiet NaN
  bf16 r;
  r.bits = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  return r;
}

BYOL_HD float bf16_to_float(bf16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Storage and compute types. Activations may be stored as bf16 (train.precision = "bf16": half the memory
// traffic); their math runs in float, one rounding per stored result. float and double compute in
// themselves. to_compute widens a stored value, from_compute<S> stores a computed one (bf16: nearest even).
template <class S>
struct compute_of {
  using type = S;
};
template <>
struct compute_of<bf16> {
  using type = float;
};
template <class S>
using compute_t = typename compute_of<S>::type;

BYOL_HD float to_compute(bf16 v) {
  return bf16_to_float(v);
}
BYOL_HD float to_compute(float v) {
  return v;
}
BYOL_HD double to_compute(double v) {
  return v;
}
template <class S>
BYOL_HD S from_compute(compute_t<S> v) {
  if constexpr (std::is_same_v<S, bf16>) {
    return float_to_bf16(v);
  } else {
    return v;
  }
}

// C++ type -> DType, for typed accessors.
template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device&) const = default;
};

std::string device_name(Device d);
inline std::ostream& operator<<(std::ostream& os, Device d) {
  return os << device_name(d);
}

}  // namespace byol
