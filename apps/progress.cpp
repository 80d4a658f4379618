#include "apps/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace byol::apps {

ProgressStyle progress_style() {
  ProgressStyle s;
  const char* forced = std::getenv("BYOL_PROGRESS");
  bool launcher = false;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"})
    launcher = launcher || std::getenv(var) != nullptr;
  if (forced && std::strcmp(forced, "plain") == 0) {
    s.in_place = false;
  } else if (forced && std::strcmp(forced, "inline") == 0) {
    s.in_place = true;
  } else {
    s.in_place = isatty(STDOUT_FILENO) && !launcher;
  }
  winsize ws{};
  if (s.in_place && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    s.width = ws.ws_col;
  } else if (const char* cols = std::getenv("COLUMNS"); s.in_place && cols && std::atoi(cols) > 0) {
    s.width = std::atoi(cols);
  }
  return s;
}

std::string progress_text(const ProgressStyle& style, const std::string& line) {
  if (style.in_place) {
    const size_t room = style.width > 1 ? static_cast<size_t>(style.width - 1) : 1;
    std::string out = "\r";  // appended piece by piece: GCC 12's -Wrestrict misfires on "\r" + std::string
    out.append(line, 0, room);
    out.append("\x1b[K");
    return out;
  }
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "[%Y-%m-%d %H:%M:%S] ", std::gmtime(&now));
  std::string out = stamp;
  out.append(line);
  out.push_back('\n');
  return out;
}

const char* progress_break(const ProgressStyle& style) {
  return style.in_place ? "\n" : "";
}

}  // namespace byol::apps
