#include "apps/version.h"

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

}  // namespace byol::apps
