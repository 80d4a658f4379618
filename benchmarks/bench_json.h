// JSON results of the benchmarks and kernel labs (`--json FILE`): one object per run,
//   {"tool": "loader_bench", "revision": "1a2b3c4d5e6f", <where it ran>, "options": {...}, "rows": [...]}
// with one entry in "rows" per line of the printed table. Conventions: times are in milliseconds under
// keys ending in "_ms" (and are finite and positive wherever they appear), rates under "gb_s",
// "gflops", "images_per_s", shares of a yardstick under "..._percent" (0-100); a figure that was not
// measured (an algorithm this build lacks) is left out, never written as 0.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <system_error>

#include "apps/version.h"

namespace byol::bench {

using Json = nlohmann::ordered_json;  // keys in the order written: "tool" first, rows as printed

// The start of every result object: the tool's name and the build's git revision.
inline Json result_header(const std::string& tool) {
  return {{"tool", tool}, {"revision", apps::build_revision()}};
}

// Writes `result` to `path` through `path`.tmp and a rename, so a reader never sees half a file.
inline void write_json_atomically(const std::string& path, const Json& result) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << result.dump(2) << "\n";
    out.flush();
    if (!out) throw std::runtime_error("--json: cannot write '" + tmp + "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error("--json: cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
}

}  // namespace byol::bench
