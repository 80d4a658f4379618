#include "apps/version.h"

#include <cstdlib>
#include <cstring>

#include "byol_build_info.h"

namespace byol::apps {

std::string build_revision() {
  return BYOL_BUILD_REVISION;
}

std::string build_features() {
  return BYOL_BUILD_FEATURES;
}

std::string version_line(const std::string& program) {
  return program + " (byol.cpp " + build_revision() + "), " + build_features();
}

bool verbose_errors(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--verbose") == 0) return true;
  const char* env = std::getenv("BYOL_VERBOSE");
  return env && *env && std::strcmp(env, "0") != 0;
}

}  // namespace byol::apps
