#include "engine/common.h"

#include <cstring>

namespace byol {

void throw_error(const std::string& message, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw Error(message, cat(base ? base + 1 : file, ":", line));
}

std::string error_text(const std::exception& e, bool verbose) {
  if (const auto* b = dynamic_cast<const Error*>(&e); b && !verbose) return b->message();
  return e.what();
}

}  // namespace byol
