// im2col and its adjoint col2im over NHWC images, for the im2col convolutions (engine/cpu/conv.cpp) and the
// bf16 im2col + matmul ones (engine/cpu/conv_matmul_bf16.cpp). Internal to engine/cpu.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/cpu/cpu_backend.h"
#include "engine/dtype.h"

namespace byol::cpu {

template <class T>
inline void copy_converted(const T* src, T* dst, int64_t n) {
  std::memcpy(dst, src, sizeof(T) * static_cast<size_t>(n));
}
inline void copy_converted(const float* src, bf16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

// col[(n*P + p)*Q + q, (r*S + s)*C + c] = x[n0 + n, p*stride - pad + r, q*stride - pad + s, c] or 0,
// converted from T to U (the same type, or float to bf16 rounded to nearest even).
template <class T, class U>
void im2col(const T* x, U* col, const ConvGeom& g, int64_t n0, int64_t nb) {
  const int64_t rsc = g.R * g.S * g.C;
  const int64_t rows = nb * g.P * g.Q;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t n = n0 + row / (g.P * g.Q);
    const int64_t p = (row / g.Q) % g.P, q = row % g.Q;
    U* dst = col + row * rsc;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.stride - g.pad + r;
      for (int64_t s = 0; s < g.S; ++s, dst += g.C) {
        const int64_t w = q * g.stride - g.pad + s;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) {
          std::fill(dst, dst + g.C, U{});  // 0.0 in float, double and bf16 alike
        } else {
          copy_converted(x + ((n * g.H + h) * g.W + w) * g.C, dst, g.C);
        }
      }
    }
  }
}

// dx[n0 + n, h, w, c] += dcol[...], the adjoint of im2col. Parallel over images: each writes its own.
template <class T>
void col2im(const T* dcol, T* dx, const ConvGeom& g, int64_t n0, int64_t nb) {
  const int64_t rsc = g.R * g.S * g.C;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < nb; ++n) {
    T* img = dx + (n0 + n) * g.H * g.W * g.C;
    for (int64_t p = 0; p < g.P; ++p) {
      for (int64_t q = 0; q < g.Q; ++q) {
        const T* src = dcol + ((n * g.P + p) * g.Q + q) * rsc;
        for (int64_t r = 0; r < g.R; ++r) {
          const int64_t h = p * g.stride - g.pad + r;
          for (int64_t s = 0; s < g.S; ++s, src += g.C) {
            const int64_t w = q * g.stride - g.pad + s;
            if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
            T* d = img + (h * g.W + w) * g.C;
            for (int64_t c = 0; c < g.C; ++c) d[c] += src[c];
          }
        }
      }
    }
  }
}

}  // namespace byol::cpu
