// Test runner. ctest runs the CPU tests one test case at a time and the GPU tests (tag [cuda]) as one
// group; that group exits with code 77, which ctest reports as "skipped", when this build has no CUDA
// backend or no GPU is visible, after printing why.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "engine/device_memory.h"

int main(int argc, char** argv) {
  bool cuda_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.find("[cuda]") != std::string::npos && a.find("~[cuda]") == std::string::npos) cuda_only = true;
  }
  if (cuda_only) {
    if (!byol::cuda_compiled()) {
      std::printf(
          "SKIPPED [cuda] tests: this build has no CUDA backend (nvcc not found at configure time)\n");
      return 77;
    }
    if (byol::cuda_device_count() == 0) {
      std::printf(
          "SKIPPED [cuda] tests: no CUDA device is visible on this machine; run "
          "scripts/gpu_check.sh on a GPU machine\n");
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}
