// The kernel labs' main(): `--help` prints the lab's usage line; on a machine (or a build) without a
// visible GPU the lab says "skipped: no GPU visible" and exits 0, so running every lab on a CPU-only CI
// machine reports skips, not failures; an error while running exits 1, naming the lab.
#pragma once

#include <cstdio>
#include <cstring>
#include <exception>

#include "engine/device_memory.h"

namespace byol::lab {

template <class Run>
int lab_main(int argc, char** argv, const char* usage, Run&& run) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: %s\n", usage);
      return 0;
    }
  if (cuda_device_count() == 0) {
    std::printf("%s: skipped: no GPU visible (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them)\n",
                argv[0]);
    return 0;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}

}  // namespace byol::lab
