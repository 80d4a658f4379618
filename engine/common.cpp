#include "engine/common.h"

#include <cstring>

namespace byol {

void throw_error(const std::string& message, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw Error(cat(message, " [", base ? base + 1 : file, ":", line, "]"));
}

}  // namespace byol
