// byol-pretrain's progress output. On an interactive terminal: one line rewritten in place, cut to the
// terminal's width (no wrapped half-lines). Otherwise: plain lines, each with a UTC timestamp, so logs of
// batch jobs stay line by line; also under mpirun, srun and other launchers, which give each rank a
// pseudo-terminal (isatty is true there, but the output ends up in a log).
#pragma once

#include <string>

namespace byol::apps {

struct ProgressStyle {
  bool in_place = false;  // rewrite one line with '\r'
  int width = 80;         // columns of the terminal (in_place only)
};

// From stdout and the environment: a launcher's variables (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK,
// SLURM_PROCID) mean plain lines; BYOL_PROGRESS=plain or =inline forces either.
ProgressStyle progress_style();

// The text to print for one progress line: "\r" + the line cut to width - 1 + clear-to-end-of-line, or
// "[YYYY-MM-DD HH:MM:SS] " + line + "\n".
std::string progress_text(const ProgressStyle& style, const std::string& line);
// For a line that must not be overwritten (kNN results, warnings): "\n" first when in place, so it does
// not land on the progress line; else nothing.
const char* progress_break(const ProgressStyle& style);

}  // namespace byol::apps
