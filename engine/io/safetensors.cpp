#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <tuple>

namespace byol {

// The data section is the tensors' bytes as they lie in memory, so this only holds on little-endian
// hosts (every platform byol.cpp targets).
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The reference implementation's limit on the header; a larger length means a corrupt file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::f32, "F32"}, {DType::f64, "F64"}, {DType::bf16, "BF16"},
                                     {DType::u8, "U8"},   {DType::i32, "I32"}, {DType::i64, "I64"}};

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& d : kDTypeNames) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

std::string os_error(int err) {
  return std::strerror(err);
}

// ---------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------

// The temporary file's name: ".<target's file name>.tmp-<pid>-<counter>-<random hex>", beside the target.
constexpr char kTempMarker[] = ".tmp-";

bool is_temporary_name(const std::string& name) {
  const size_t at = name.rfind(kTempMarker);
  if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at < 2) return false;
  // <pid>-<counter>-<hex>: two decimal numbers and a hexadecimal one, dash-separated.
  const std::string rest = name.substr(at + std::strlen(kTempMarker));
  const size_t d1 = rest.find('-'), d2 = d1 == std::string::npos ? d1 : rest.find('-', d1 + 1);
  if (d2 == std::string::npos) return false;
  auto all = [](const std::string& s, const char* digits) {
    return !s.empty() && s.find_first_not_of(digits) == std::string::npos;
  };
  return all(rest.substr(0, d1), "0123456789") && all(rest.substr(d1 + 1, d2 - d1 - 1), "0123456789") &&
         all(rest.substr(d2 + 1), "0123456789abcdef");
}

// A temporary file beside the target; removed on destruction unless commit() renamed it into place.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    const std::filesystem::path p(target);
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    static std::atomic<uint64_t> counter{0};
    std::random_device rd;
    for (int attempt = 0; attempt < 16; ++attempt) {
      const std::string candidate = cat(dir, "/.", p.filename().string(), kTempMarker, ::getpid(), "-",
                                        counter.fetch_add(1), "-", std::hex, rd());
      // 0666 before the umask, as for any new file (mkstemp would force 0600).
      fd_ = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        path_ = candidate;
        return;
      }
      if (errno != EEXIST) {
        BYOL_FAIL("save_safetensors: ", target, ": cannot create a temporary file in '", dir,
                  "': ", os_error(errno));
      }
    }
    BYOL_FAIL("save_safetensors: ", target, ": cannot find an unused temporary file name in '", dir, "'");
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t{1} << 30));
      if (n < 0) {
        if (errno == EINTR) continue;
        BYOL_FAIL("save_safetensors: ", target_, ": write failed: ", os_error(errno));
      }
      p += n;
      bytes -= static_cast<size_t>(n);
    }
  }

  // fsync, close, rename over the target, fsync the directory so the rename itself is durable.
  void commit() {
    if (::fsync(fd_) != 0) BYOL_FAIL("save_safetensors: ", target_, ": fsync failed: ", os_error(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) BYOL_FAIL("save_safetensors: ", target_, ": close failed: ", os_error(errno));
    if (::rename(path_.c_str(), target_.c_str()) != 0) {
      BYOL_FAIL("save_safetensors: ", target_,
                ": cannot rename the temporary file into place: ", os_error(errno));
    }
    committed_ = true;
    const std::filesystem::path p(target_);
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      BYOL_FAIL("save_safetensors: ", target_, ": written, but cannot open its directory '", dir,
                "' to fsync it: ", os_error(errno));
    }
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    // Some file systems cannot fsync a directory (EINVAL); the file itself is already durable.
    if (rc != 0 && err != EINVAL && err != ENOTSUP) {
      BYOL_FAIL("save_safetensors: ", target_, ": written, but fsync of its directory '", dir,
                "' failed: ", os_error(err));
    }
  }

 private:
  std::string target_, path_;
  int fd_ = -1;
  bool committed_ = false;
};

bool is_valid_utf8_json_string(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// The header text, padded with spaces to a multiple of 8 bytes.
std::string make_header(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) {
      BYOL_CHECK(is_valid_utf8_json_string(key) && is_valid_utf8_json_string(value),
                 "save_safetensors: ", path, ": metadata entry '", key, "' is not valid UTF-8");
      meta[key] = value;
    }
    header[kMetadataKey] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    BYOL_CHECK(name != kMetadataKey, "save_safetensors: ", path, ": '", kMetadataKey,
               "' is reserved and cannot name a tensor");
    BYOL_CHECK(seen.insert(name).second, "save_safetensors: ", path, ": duplicate tensor name '", name, "'");
    BYOL_CHECK(is_valid_utf8_json_string(name), "save_safetensors: ", path,
               ": a tensor name is not valid UTF-8");
    BYOL_CHECK(t.defined(), "save_safetensors: ", path, ": tensor '", name, "' is undefined");
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    ordered_json entry = ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = std::move(entry);
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// ---------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------

// An open file descriptor, closed on destruction.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads exactly `bytes` at `offset`; a short read means the file changed while we read it.
void read_exact(int fd, const std::string& path, void* out, size_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, std::min<size_t>(bytes, size_t{1} << 30), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      BYOL_FAIL(path, ": read failed: ", os_error(errno));
    }
    BYOL_CHECK(n > 0, path, ": unexpected end of file at byte ", offset, " (was the file truncated while ",
               "being read?)");
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<size_t>(n);
  }
}

// Parses the header; rejects duplicate keys at any level (the spec disallows them, and nlohmann::json
// would silently keep the last one).
json parse_header(const std::string& path, const std::string& text) {
  BYOL_CHECK(text.find('\0') == std::string::npos, path, ": not a valid safetensors file: the header ",
             "contains a NUL byte");
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty() && duplicate.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, callback);
  } catch (const json::exception& e) {
    BYOL_FAIL(path, ": not a valid safetensors file: the header is not valid JSON (", e.what(), ")");
  }
  BYOL_CHECK(duplicate.empty(), path, ": not a valid safetensors file: the header has the key '", duplicate,
             "' twice");
  BYOL_CHECK(header.is_object(), path, ": not a valid safetensors file: the header is a JSON ",
             header.type_name(), ", expected an object");
  return header;
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

uint64_t read_u64(const std::string& path, const std::string& name, const char* field, const json& v) {
  BYOL_CHECK(v.is_number_unsigned(), path, ": tensor '", name, "': ", field,
             " entries must be non-negative integers, got ", v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const json& info) {
  BYOL_CHECK(info.is_object(), path, ": tensor '", name, "': expected an object with dtype, shape and ",
             "data_offsets, got ", info.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    BYOL_CHECK(info.contains(field), path, ": tensor '", name, "' has no \"", field, "\"");
  }
  Entry e;
  e.name = name;
  const json& dtype = info["dtype"];
  BYOL_CHECK(dtype.is_string(), path, ": tensor '", name, "': dtype must be a string, got ", dtype.dump());
  BYOL_CHECK(parse_dtype(dtype.get<std::string>(), &e.dtype), path, ": tensor '", name, "' has dtype ",
             dtype.dump(), ", which byol.cpp does not support (supported: F32, F64, BF16, U8, I32, I64)");

  const json& shape = info["shape"];
  BYOL_CHECK(shape.is_array(), path, ": tensor '", name, "': shape must be an array, got ", shape.dump());
  // The product of the non-zero extents bounds every stride, so it must fit in int64 too (a shape
  // such as [0, 2^40, 2^40] holds no data but would overflow the strides).
  uint64_t numel = 1, nonzero_numel = 1;
  bool overflow = false;
  for (const json& d : shape) {
    const uint64_t n = read_u64(path, name, "shape", d);
    numel *= n;  // cannot overflow while nonzero_numel does not
    overflow = overflow || (n != 0 && __builtin_mul_overflow(nonzero_numel, n, &nonzero_numel));
    e.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t bytes = 0;
  overflow = overflow || nonzero_numel > static_cast<uint64_t>(INT64_MAX) ||
             __builtin_mul_overflow(numel, dtype_size(e.dtype), &bytes) ||
             bytes > static_cast<uint64_t>(INT64_MAX);
  BYOL_CHECK(!overflow, path, ": tensor '", name, "': shape ", shape.dump(), " is too large");

  const json& offsets = info["data_offsets"];
  BYOL_CHECK(offsets.is_array() && offsets.size() == 2, path, ": tensor '", name,
             "': data_offsets must be [begin, end], got ", offsets.dump());
  e.begin = read_u64(path, name, "data_offsets", offsets[0]);
  e.end = read_u64(path, name, "data_offsets", offsets[1]);
  BYOL_CHECK(e.begin <= e.end, path, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
             "] end before they begin");
  BYOL_CHECK(e.end - e.begin == bytes, path, ": tensor '", name, "': ", dtype.get<std::string>(),
             shape.dump(), " needs ", bytes, " bytes, but data_offsets [", e.begin, ", ", e.end, "] hold ",
             e.end - e.begin);
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& meta) {
  BYOL_CHECK(meta.is_object(), path, ": \"", kMetadataKey, "\" must be an object of strings, got ",
             meta.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : meta.items()) {
    BYOL_CHECK(value.is_string(), path, ": \"", kMetadataKey, "\" entry '", key, "' must be a string, got ",
               value.dump());
    out[key] = value.get<std::string>();
  }
  return out;
}

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kDTypeNames) {
    if (d.dtype == t) return d.name;
  }
  BYOL_FAIL("safetensors_dtype_name: unknown dtype ", static_cast<int>(t));
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Everything that can be checked is checked before the temporary file exists.
  const std::string header = make_header(path, tensors, metadata);
  const uint64_t header_len = header.size();

  TempFile file(path);
  char len_bytes[8];
  std::memcpy(len_bytes, &header_len, 8);  // little-endian (static_assert above)
  file.write(len_bytes, 8);
  file.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    // One tensor at a time on the host, so saving device tensors needs no second copy of them all.
    const Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(Device::cpu());
    file.write(host.raw_data(), static_cast<size_t>(host.numel()) * dtype_size(host.dtype()));
  }
  file.commit();
}

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || !is_temporary_name(e.path().filename().string())) continue;
    if (std::filesystem::remove(e.path(), ec)) removed.push_back(e.path().string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

namespace {

SafetensorsFile load(const std::string& path) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BYOL_CHECK(fd.fd >= 0, path, ": cannot open: ", os_error(errno));
  struct stat st {};
  BYOL_CHECK(::fstat(fd.fd, &st) == 0, path, ": cannot stat: ", os_error(errno));
  BYOL_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  BYOL_CHECK(file_size >= 8, path, ": not a valid safetensors file: it is ", file_size,
             " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  read_exact(fd.fd, path, &header_len, 8, 0);
  BYOL_CHECK(header_len <= kMaxHeaderBytes, path, ": not a valid safetensors file: header length ",
             header_len, " exceeds the ", kMaxHeaderBytes, "-byte limit");
  BYOL_CHECK(header_len <= file_size - 8, path, ": not a valid safetensors file: header length ", header_len,
             " is larger than the ", file_size - 8, " bytes after it (truncated file?)");
  std::string text(header_len, '\0');
  read_exact(fd.fd, path, text.data(), header_len, 8);
  const json header = parse_header(path, text);

  std::map<std::string, std::string> metadata;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      metadata = parse_metadata(path, value);
    } else {
      entries.push_back(parse_entry(path, key, value));
    }
  }

  // Sorted by offset, the tensors must tile the data section: each starts where the previous ended
  // (no overlap, no hole) and the last ends at the end of the file.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    BYOL_CHECK(e.begin >= covered, path, ": not a valid safetensors file: tensor '", e.name, "' (bytes [",
               e.begin, ", ", e.end, ")) overlaps tensor '", previous ? previous->name : "", "' (bytes [",
               previous ? previous->begin : 0, ", ", covered, "))");
    BYOL_CHECK(e.end <= data_size, path, ": truncated or corrupt: tensor '", e.name, "' needs bytes [",
               e.begin, ", ", e.end, ") of the data section, which has only ", data_size, " bytes");
    BYOL_CHECK(e.begin == covered, path, ": not a valid safetensors file: ", e.begin - covered,
               " bytes of the data section before tensor '", e.name,
               "' belong to no tensor (the format allows no holes)");
    covered = e.end;
    previous = &e;
  }
  BYOL_CHECK(covered == data_size, path, ": not a valid safetensors file: ", data_size - covered,
             " bytes after the last tensor belong to no tensor (the format allows no trailing data)");

  NamedTensors tensors;
  tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_exact(fd.fd, path, t.raw_data(), e.end - e.begin, data_start + e.begin);
    t.set_name(e.name);
    tensors.emplace_back(e.name, std::move(t));
  }
  return SafetensorsFile(path, std::move(tensors), std::move(metadata));
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  return with_context(path, [&] { return load(path); });
}

// ---------------------------------------------------------------------------------------------------
// SafetensorsFile
// ---------------------------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::string path, NamedTensors tensors,
                                 std::map<std::string, std::string> metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    BYOL_CHECK(index_.emplace(tensors_[i].first, i).second, path_, ": duplicate tensor name '",
               tensors_[i].first, "'");
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return index_.count(name) != 0;
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  const auto it = index_.find(name);
  if (it != index_.end()) return tensors_[it->second].second;
  // Name the few tensors whose names share the longest prefix with the one asked for: a missing
  // "encoder." prefix or a renamed layer shows at a glance.
  std::vector<std::string> candidates = names();
  std::stable_sort(candidates.begin(), candidates.end(), [&](const std::string& a, const std::string& b) {
    return common_prefix(a, name) > common_prefix(b, name);
  });
  constexpr size_t kShown = 5;
  std::string listed;
  for (size_t i = 0; i < std::min(kShown, candidates.size()); ++i) {
    listed += cat(i ? ", " : "", "'", candidates[i], "'");
  }
  if (candidates.size() > kShown) listed += ", ...";
  BYOL_FAIL(path_, ": no tensor named '", name, "' (the file has ", tensors_.size(), " tensors",
            candidates.empty() ? "" : "; closest: ", listed, ")");
}

const Tensor& SafetensorsFile::get(const std::string& name, const Shape& shape, DType dtype) const {
  const Tensor& t = get(name);
  BYOL_CHECK(t.shape() == shape && t.dtype() == dtype, path_, ": tensor '", name, "' expected ",
             dtype_name(dtype), shape_str(shape), ", got ", dtype_name(t.dtype()), shape_str(t.shape()));
  return t;
}

void SafetensorsFile::copy_to(const std::string& name, const Tensor& dst) const {
  BYOL_CHECK(dst.defined(), path_, ": copy_to('", name, "'): the destination tensor is undefined");
  const Tensor& src = get(name, dst.shape(), dst.dtype());
  Tensor out = dst;
  out.copy_(src);
}

const std::string& SafetensorsFile::metadata_value(const std::string& key) const {
  const auto it = metadata_.find(key);
  BYOL_CHECK(it != metadata_.end(), path_, ": no metadata entry '", key, "'");
  return it->second;
}

}  // namespace byol
