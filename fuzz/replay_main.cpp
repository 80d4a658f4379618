// The replay driver: runs a fuzz target's LLVMFuzzerTestOneInput once on each file named on the command
// line and on each file in each folder named there (sorted; folders are not descended). Linked into
// fuzz_replay_<target> with any compiler, so every build replays fuzz/regressions/<target>/ (ctest) and
// anyone can rerun a crash that libFuzzer saved:
//   fuzz_replay_packed [--verbose] fuzz/regressions/packed build-fuzz/crashes/packed/crash-1234
// --verbose (or BYOL_FUZZ_VERBOSE=1) prints the error each rejected input gets. Finding no input at all is
// an error (exit 2): an empty regression folder must not pass as a clean replay. A finding aborts.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--verbose") {
      setenv("BYOL_FUZZ_VERBOSE", "1", 1);
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<std::string> in_dir;
      for (const fs::directory_entry& e : fs::directory_iterator(arg))
        if (e.is_regular_file()) in_dir.push_back(e.path().string());
      if (in_dir.empty()) {
        std::fprintf(stderr, "replay: folder '%s' holds no input files\n", arg.c_str());
        return 2;
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else if (fs::is_regular_file(arg, ec)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: '%s' is neither a file nor a folder\n", arg.c_str());
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no inputs (usage: %s [--verbose] FILE_OR_FOLDER...)\n", argv[0]);
    return 2;
  }
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "replay: cannot read '%s'\n", f.c_str());
      return 2;
    }
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", f.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::fprintf(stderr, "replay: %zu inputs, no finding\n", files.size());
  return 0;
}
