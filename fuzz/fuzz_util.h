// What every fuzz target shares: a per-process scratch folder for the files a reader needs, the split of
// one input into several files, the rule on exceptions, and the checks on what a reader accepted.
//
// Conventions:
//  - A target gets bytes, writes them where the reader wants a path (scratch_path(name), one folder per
//    process, reused by every input and removed at exit), calls the project's reader and returns 0.
//  - Only a byol::Error may end a read (expect_byol_error). Any other exception is a finding: its type
//    and message are printed and the process aborts, so libFuzzer and the replay both report it. A failed
//    allocation aborts too (a new_handler), before with_context (engine/common.h) could turn its
//    std::bad_alloc into a byol::Error: the reader tried to allocate what the input declares.
//  - BYOL_FUZZ_VERBOSE=1 prints each rejected input's error message (what the replay test shows with
//    --verbose, to see that a regression input is refused for the reason it was written for).
//  - An accepted input is checked (check_dataset, check_image, check_tensor): sizes positive, labels in
//    range, tensor views inside their storage, and the bytes of a few images and of every tensor read, so
//    a view outside its buffer trips AddressSanitizer.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
#include "engine/common.h"
#include "engine/tensor.h"

namespace byol::fuzz {

// Inputs that hold several files put this line between them (make_seeds writes it; libFuzzer's
// comparison tracing finds it in the seeds and keeps it).
inline constexpr std::string_view kSplit = "\n--byol-fuzz-split--\n";

// `data` cut at each kSplit: one part per file, the first always present (possibly empty).
inline std::vector<std::string> split_input(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = all.find(kSplit, start)) != std::string_view::npos; start = at + kSplit.size())
    parts.emplace_back(all.substr(start, at - start));
  parts.emplace_back(all.substr(start));
  return parts;
}

// Where check_image and check_tensor leave the sum of the bytes they read, so the reads stay.
inline volatile unsigned g_sink = 0;

[[noreturn]] inline void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "byol fuzz: FINDING: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/byol_fuzz_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) finding("mkdtemp failed", tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// <scratch folder>/<name>; sub-folders in `name` are created.
inline std::string scratch_path(const std::string& name) {
  static ScratchDir dir;
  const std::filesystem::path p = std::filesystem::path(dir.path()) / name;
  std::filesystem::create_directories(p.parent_path());
  return p.string();
}

inline std::string write_scratch(const std::string& name, const void* data, size_t size) {
  const std::string path = scratch_path(name);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0)
    finding("cannot write the scratch file", path);
  return path;
}
inline std::string write_scratch(const std::string& name, const std::string& bytes) {
  return write_scratch(name, bytes.data(), bytes.size());
}

inline void remove_scratch(const std::string& name) {
  std::error_code ec;
  std::filesystem::remove(scratch_path(name), ec);
}

// A failed allocation is a finding even where with_context (engine/common.h) would turn its
// std::bad_alloc into a byol::Error: the reader asked for what the input declares, not what it holds.
// (Under AddressSanitizer and libFuzzer, -malloc_limit_mb reports such a request before it fails.)
inline void install_new_handler() {
  static const bool installed = [] {
    std::set_new_handler([] { finding("an allocation failed (std::bad_alloc)", "a size from the input?"); });
    return true;
  }();
  (void)installed;
}

// Runs read(); a byol::Error is the reader refusing the input (fine), anything else aborts.
template <class F>
void expect_byol_error(F&& read) {
  install_new_handler();
  try {
    read();
  } catch (const byol::Error& e) {
    static const bool verbose = [] {
      const char* v = std::getenv("BYOL_FUZZ_VERBOSE");
      return v && *v && std::strcmp(v, "0") != 0;
    }();
    if (verbose) std::fprintf(stderr, "byol fuzz: rejected: %s\n", e.what());
  } catch (const std::exception& e) {
    finding(cat("an exception other than byol::Error (", typeid(e).name(), ")").c_str(), e.what());
  } catch (...) {
    finding("an exception that is not a std::exception", "");
  }
}

#define BYOL_FUZZ_CHECK(cond, ...)                                                         \
  do {                                                                                     \
    if (!(cond))                                                                           \
      ::byol::fuzz::finding("check failed: " #cond,                                        \
                            ::byol::cat(__VA_ARGS__, " (", __FILE__, ":", __LINE__, ")")); \
  } while (0)

// Reads every byte of the view (AddressSanitizer sees any byte outside its buffer) and checks its shape;
// `buffer` (when given) is the scratch vector a decoder wrote the view into.
inline void check_image(const data::ImageView& v, const std::vector<uint8_t>* buffer = nullptr) {
  BYOL_FUZZ_CHECK(v.data != nullptr && v.height >= 1 && v.width >= 1 && (v.channels == 1 || v.channels == 3),
                  "image ", v.height, "x", v.width, "x", v.channels);
  if (buffer) {  // decoded: within the pixel limit and inside the decoder's buffer
    BYOL_FUZZ_CHECK(v.height * int64_t(v.width) <= data::max_image_pixels(), "decoded ", v.height, "x",
                    v.width, ", above the pixel limit ", data::max_image_pixels());
    const uint8_t* begin = buffer->data();
    BYOL_FUZZ_CHECK(v.data >= begin && v.bytes() <= int64_t(buffer->size()) &&
                        v.data - begin <= int64_t(buffer->size()) - v.bytes(),
                    "view of ", v.bytes(), " bytes at offset ", v.data - begin, " of a ", buffer->size(),
                    "-byte buffer");
  }
  unsigned sum = 0;
  for (int64_t i = 0; i < v.bytes(); ++i) sum += v.data[i];
  g_sink = sum;
}

// A tensor a reader returned: a CPU view whose every element lies inside its storage, each byte read.
inline void check_tensor(const Tensor& t, const std::string& name) {
  BYOL_FUZZ_CHECK(t.defined() && t.device().is_cpu(), "tensor '", name, "'");
  int64_t last = t.offset();  // element offset of the view's last element
  for (int64_t d = 0; d < t.dim(); ++d) {
    BYOL_FUZZ_CHECK(t.shape()[d] >= 0 && t.strides()[d] >= 0, "tensor '", name, "' ", t.describe());
    if (t.shape()[d] > 0) last += (t.shape()[d] - 1) * t.strides()[d];
  }
  if (t.numel() == 0) return;
  const size_t element = dtype_size(t.dtype());
  BYOL_FUZZ_CHECK(t.storage() && t.offset() >= 0 && uint64_t(last + 1) * element <= t.storage()->bytes(),
                  "tensor '", name, "' ", t.describe(), " reaches element ", last, " of a ",
                  t.storage() ? t.storage()->bytes() : 0, "-byte storage");
  const uint8_t* bytes = static_cast<const uint8_t*>(t.storage()->data());
  unsigned sum = 0;
  for (int64_t i = t.offset() * int64_t(element); i < (last + 1) * int64_t(element); ++i) sum += bytes[i];
  g_sink = sum;
}

// An accepted dataset: every label in range (-1 when unlabeled), class names as many as the classes, and
// the first `images` images and the last one read. Decoding datasets may still refuse an image with a
// byol::Error (a corrupt member of a valid archive); that is fine.
inline void check_dataset(const data::Dataset& d, int images = 4, bool scratch_views = false) {
  const int64_t n = d.size();
  const int classes = d.num_classes();
  BYOL_FUZZ_CHECK(n >= 0 && classes >= 0, d.describe());
  const std::vector<std::string> names = d.class_names();
  BYOL_FUZZ_CHECK(names.empty() || int64_t(names.size()) == classes, names.size(), " class names for ",
                  classes, " classes");
  for (int64_t i = 0; i < n && i < 100000; ++i) {
    const int64_t label = d.label(i);
    BYOL_FUZZ_CHECK(classes == 0 ? label == -1 : (label >= 0 && label < classes), "label ", label,
                    " of image ", i, " with ", classes, " classes");
  }
  std::vector<int64_t> read;
  for (int64_t i = 0; i < n && i < images; ++i) read.push_back(i);
  if (n > images) read.push_back(n - 1);
  std::vector<uint8_t> scratch;
  for (int64_t i : read) {
    expect_byol_error([&] {
      const data::ImageView v = d.image(i, scratch);
      check_image(v, scratch_views ? &scratch : nullptr);
    });
  }
}

}  // namespace byol::fuzz
