// The host/device qualifier of the per-element math in this folder ("one formula, two backends").
//
// engine/math/ is a leaf: its headers include this one and the standard library, nothing else, so the
// CPU backend (engine/cpu/), the CUDA kernels (engine/cuda/) and the data pipeline (data/augment.cpp)
// share the same formulas without pulling in the rest of the engine.
#pragma once

#if defined(__CUDACC__)
#define BYOL_HD __host__ __device__ __forceinline__
#else
#define BYOL_HD inline
#endif
