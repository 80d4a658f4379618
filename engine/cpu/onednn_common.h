// What the oneDNN convolution paths share (engine/cpu/conv_onednn.cpp, engine/cpu/conv_matmul_bf16.cpp): one
// CPU engine and stream for the process, and oneDNN's exceptions turned into ours naming the convolution.
// Internal to engine/cpu; only for builds with oneDNN.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include "engine/common.h"
#include "engine/cpu/cpu_backend.h"

namespace byol::cpu::onednn {

inline dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

inline dnnl::stream& cpu_stream() {
  static dnnl::stream s(cpu_engine());
  return s;
}

// Runs body; a dnnl::error becomes an Error naming the pass (`what`), the path (`path`) and the geometry.
template <class F>
void run_checked(const char* what, const char* path, const ConvGeom& g, F&& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    BYOL_FAIL("conv2d ", what, " (", path, ") failed for input [", g.N, ", ", g.H, ", ", g.W, ", ", g.C,
              "], weight [", g.K, ", ", g.R, ", ", g.S, ", ", g.C, "]: ", e.what());
  }
}

}  // namespace byol::cpu::onednn
