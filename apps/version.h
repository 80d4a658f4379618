// The build's identity for the apps' --version and their run folders: byol.cpp's git revision (with
// "+changes" when the tree differed from it) and the optional parts the build has (cmake/build_info.cmake,
// regenerated at every build).
#pragma once

#include <string>

namespace byol::apps {

std::string build_revision();  // "1a2b3c4d5e6f", "1a2b3c4d5e6f+changes" or "unknown revision (no git)"
std::string build_features();  // "with MPI, libjpeg-turbo, ..., without CUDA, ... (GNU 12.2.0, Release)"
// "<program> (byol.cpp <revision>), <features>": what --version prints.
std::string version_line(const std::string& program);

// --verbose on the command line, or BYOL_VERBOSE set and not "0": error messages then keep the source
// location that raised them (byol::error_text).
bool verbose_errors(int argc, char** argv);

}  // namespace byol::apps
