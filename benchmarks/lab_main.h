// The kernel labs' main() and their report. Every lab takes
//   <lab> [positive integers: its sizes] [--json FILE] [--help]
// `--help` prints the lab's usage line; anything else that is not one of its sizes is a usage error (exit
// 2). On a machine (or a build) without a visible GPU the lab says "skipped: no GPU visible" and exits 0
// (with --json, FILE holds {"tool": ..., "skipped": "no GPU visible"}), so running every lab on a CPU-only
// CI machine reports skips, not failures; an error while running exits 1, naming the lab, and a failed
// validation exits 1 too, after the lab has timed its kernels all the same (a GPU is lent rarely: the
// figures of a run whose check failed still say where the time goes; timing_anyway prints that).
//
// A lab fills a Report as it runs: its sizes (options), each validation's outcome, the copy bandwidth and
// one row per timing line it prints. With --json FILE, lab_main writes it as one JSON object
// (benchmarks/bench_json.h) after the lab returns, whatever the outcome ("status": "ok", "validation
// failed" or "error: ..."):
//   {"tool", "revision", "device", "options", "validation": [{"name", "ok", ...}], "copy_gb_s",
//    "rows": [{"name", "median_ms", "min_ms", "bytes", "gb_s", "copy_percent", ...sizes}], "status"}
#pragma once

#include <cuda_runtime.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/bench_json.h"
#include "engine/cuda/timing.h"
#include "engine/device_memory.h"

namespace byol::lab {

using bench::Json;

// Says, after a failed validation, that the lab goes on to time its kernels and will exit 1.
inline void timing_anyway(bool valid) {
  if (!valid) std::printf("validation FAILED: timing the kernels anyway (exit status 1 at the end)\n");
}

struct Report {
  Json options = Json::object();    // the sizes the lab runs at: {"n": 28000000}
  Json validation = Json::array();  // one {"name", "ok", ...its figures} per check
  Json rows = Json::array();        // one per timing line printed
  double copy_gb_s = 0;             // the yardstick of the rows' copy_percent

  // Measures the device-to-device copy bandwidth, prints it and keeps it for the rows that follow.
  double measure_copy_bandwidth() {
    copy_gb_s = cuda::device_copy_bandwidth_gbs();
    std::printf("device-to-device copy: %.1f GB/s\n", copy_gb_s);
    return copy_gb_s;
  }

  // Keeps one validation check: pass/fail and its figures ({"max_rel_error", e}, {"tolerance", t}, ...); the
  // lab prints its own line.
  void validated(const std::string& name, bool ok, const Json& figures = Json::object()) {
    Json entry = {{"name", name}, {"ok", ok}};
    entry.update(figures);
    validation.push_back(std::move(entry));
  }

  // Prints cuda::print_timing's line for `bytes` moved in time `t` and keeps it as a row (with `sizes`,
  // e.g. {"n", n}, when the name does not say them).
  void timing(const std::string& name, const cuda::Timing& t, double bytes,
              const Json& sizes = Json::object()) {
    cuda::print_timing(name.c_str(), t, bytes, copy_gb_s);
    const double gb_s = bytes / (t.median_ms * 1e-3) / 1e9;
    Json row = {{"name", name},       {"median_ms", t.median_ms},
                {"min_ms", t.min_ms}, {"bytes", bytes},
                {"gb_s", gb_s},       {"copy_percent", 100.0 * gb_s / copy_gb_s}};
    row.update(sizes);
    rows.push_back(std::move(row));
  }
};

namespace detail {

inline bool positive_integer(const std::string& s) {
  if (s.empty() || s.size() > 18 || s[0] == '0') return false;
  for (const char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

inline std::string device_name() {
  int id = 0;
  cudaDeviceProp props{};
  if (cudaGetDevice(&id) != cudaSuccess || cudaGetDeviceProperties(&props, id) != cudaSuccess)
    return "unknown GPU";
  return props.name;
}

// Writes the result when --json was given; false (after saying why) when that fails.
inline bool write_result(const char* lab, const std::string& path, const Json& result) {
  if (path.empty()) return true;
  try {
    bench::write_json_atomically(path, result);
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", lab, e.what());
    return false;
  }
}

}  // namespace detail

// `tool`: the lab's name; `usage`: its usage line (sizes, [--json FILE], defaults); `counts`: how many sizes
// it takes (e.g. {0, 2}: none, or N and D). run(Report&, sizes) returns 0, or 1 when a validation failed.
template <class Run>
int lab_main(int argc, char** argv, const char* tool, const char* usage, std::initializer_list<size_t> counts,
             Run&& run) {
  auto usage_error = [&](const std::string& why) {
    std::fprintf(stderr, "%s: %s\nusage: %s\nRun with --help for more information.\n", tool, why.c_str(),
                 usage);
    return 2;
  };
  std::string json_path;
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s\n  --json FILE  also write the results to FILE as one JSON object\n", usage);
      return 0;
    }
    if (a == "--json") {
      if (i + 1 >= argc) return usage_error("--json needs a FILE");
      json_path = argv[++i];
    } else if (a.rfind("--json=", 0) == 0) {
      json_path = a.substr(7);
      if (json_path.empty()) return usage_error("--json needs a FILE");
    } else if (detail::positive_integer(a)) {
      sizes.push_back(std::stoll(a));
    } else {
      return usage_error("unexpected argument '" + a + "' (sizes are positive integers)");
    }
  }
  bool count_ok = false;
  for (const size_t c : counts) count_ok = count_ok || sizes.size() == c;
  if (!count_ok) {
    std::string expected;
    for (const size_t c : counts) expected += (expected.empty() ? "" : " or ") + std::to_string(c);
    return usage_error("expected " + expected + " sizes, got " + std::to_string(sizes.size()));
  }

  Json result = bench::result_header(tool);
  if (cuda_device_count() == 0) {
    std::printf("%s: skipped: no GPU visible (nvidia-smi lists none, or CUDA_VISIBLE_DEVICES hides them)\n",
                tool);
    result["skipped"] = "no GPU visible";
    return detail::write_result(tool, json_path, result) ? 0 : 1;
  }
  Report report;
  int rc = 1;
  std::string status;
  try {
    result["device"] = detail::device_name();
    rc = run(report, sizes);
    status = rc == 0 ? "ok" : "validation failed";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", tool, e.what());
    status = std::string("error: ") + e.what();
  }
  result["options"] = report.options;
  result["validation"] = report.validation;
  result["copy_gb_s"] = report.copy_gb_s;
  result["rows"] = report.rows;
  result["status"] = status;
  return detail::write_result(tool, json_path, result) ? rc : 1;
}

}  // namespace byol::lab
