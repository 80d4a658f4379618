// safetensors files: bitwise round trips, the exact bytes of a small file, every corruption the reader
// must reject (each error names the file and the reason), and atomic writes.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "engine/device_memory.h"
#include "engine/io/safetensors.h"

using namespace byol;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp directory, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "byol_io_test.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::set<std::string> entries() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.insert(e.path().filename().string());
    return out;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file with this exact header text (no padding added) followed by `data`.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  const size_t bytes = static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype());
  return bytes == 0 || std::memcmp(ca.raw_data(), cb.raw_data(), bytes) == 0;
}

// Random bit patterns (NaN payloads, -0, denormals, infinities included for floating dtypes).
Tensor random_bits(const Shape& shape, DType dtype, std::mt19937_64& gen) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<unsigned char*>(t.raw_data());
  const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(dtype);
  for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(gen());
  return t;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------------

TEST_CASE("every dtype round-trips bitwise, with 0-d and empty tensors and metadata", "[io]") {
  TempDir dir;
  std::mt19937_64 gen(7);
  NamedTensors tensors;
  for (DType dt : {DType::f64, DType::i64, DType::f32, DType::i32, DType::bf16, DType::u8}) {
    const std::string base = safetensors_dtype_name(dt);
    tensors.emplace_back(base + ".matrix", random_bits({3, 5}, dt, gen));
    tensors.emplace_back(base + ".scalar", random_bits({}, dt, gen));
    tensors.emplace_back(base + ".empty", Tensor::empty({2, 0, 3}, dt));
    tensors.emplace_back(base + ".odd", random_bits({7}, dt, gen));
  }
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"step", "1234"}, {"empty", ""}, {"unicode", "\xce\xbb=0.996 \xe2\x9c\x93"}};
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors, metadata);

  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.path() == path);
  CHECK(f.metadata() == metadata);
  REQUIRE(f.size() == tensors.size());
  // Written in the order given, so the file (offset) order is the same.
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    CHECK(f.tensors()[i].first == tensors[i].first);
    CHECK(same_bytes(f.tensors()[i].second, tensors[i].second));
    CHECK(f.get(tensors[i].first).name() == tensors[i].first);
    CHECK(f.get(tensors[i].first).device().is_cpu());
  }
  CHECK(f.get("F32.scalar").dim() == 0);
  CHECK(f.get("BF16.empty").shape() == Shape{2, 0, 3});
}

TEST_CASE("a file with no tensors and no metadata round-trips", "[io]") {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  save_safetensors(path, {});
  CHECK(read_bytes(path) == le64(8) + std::string("{}      "));
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.size() == 0);
  CHECK(f.metadata().empty());
}

TEST_CASE("views are saved as the values they show", "[io]") {
  TempDir dir;
  // A window into a flat buffer (a parameter view) and a transposed, non-contiguous view.
  Tensor flat = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {10});
  Tensor window = flat.window(4, {2, 3});
  auto impl = std::make_shared<TensorImpl>(*window.impl());
  impl->shape = {3, 2};
  impl->strides = {1, 3};
  Tensor transposed(impl);
  REQUIRE_FALSE(transposed.is_contiguous());

  const std::string path = dir.file("views.safetensors");
  save_safetensors(path, {{"window", window}, {"transposed", transposed}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.get("window").to_vector<float>() == std::vector<float>{4, 5, 6, 7, 8, 9});
  CHECK(f.get("transposed").to_vector<float>() == std::vector<float>{4, 7, 5, 8, 6, 9});
}

TEST_CASE("GPU tensors are saved from, and copied back to, the device", "[io]") {
  if (!cuda_compiled() || cuda_device_count() == 0) {
    WARN("skipped: no CUDA backend in this build or no GPU visible");
    return;
  }
  TempDir dir;
  std::mt19937_64 gen(11);
  const Tensor host = random_bits({4, 6}, DType::bf16, gen);
  const std::string path = dir.file("gpu.safetensors");
  save_safetensors(path, {{"w", host.to(Device::cuda())}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(same_bytes(f.get("w"), host));
  Tensor dst = Tensor::zeros({4, 6}, DType::bf16, Device::cuda());
  f.copy_to("w", dst);
  CHECK(same_bytes(dst.to(Device::cpu()), host));
}

// ------------------------------------------------------------------------------------------------
// The exact bytes
// ------------------------------------------------------------------------------------------------

TEST_CASE("the bytes of a small file match the format by hand", "[io]") {
  TempDir dir;
  const std::string path = dir.file("tiny.safetensors");
  // Given out of name order on purpose: the file keeps the order given.
  save_safetensors(path,
                   {{"z.weight", Tensor::from_vector<float>({1.0f, -2.0f}, {2})},
                    {"b", Tensor::from_vector<uint8_t>({1, 2, 3}, {3})}},
                   {{"k", "v"}});

  // The header is 139 characters of compact JSON, padded with 5 spaces to 144 = 0x90 so the data
  // section starts at byte 8 + 144 = 152, a multiple of 8.
  const std::string header =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"z.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}"
      "     ";
  const std::string length("\x90\x00\x00\x00\x00\x00\x00\x00", 8);
  const std::string data(
      "\x00\x00\x80\x3f"  // 1.0f
      "\x00\x00\x00\xc0"  // -2.0f
      "\x01\x02\x03",
      11);
  REQUIRE(header.size() == 144);
  const std::string bytes = read_bytes(path);
  CHECK(bytes.size() == 8 + 144 + 11);
  CHECK(bytes.substr(0, 8) == length);
  CHECK(bytes.substr(8, 144) == header);
  CHECK(bytes.substr(152) == data);
}

// ------------------------------------------------------------------------------------------------
// Lookups
// ------------------------------------------------------------------------------------------------

TEST_CASE("lookups check names, shapes and dtypes and say what differs", "[io]") {
  TempDir dir;
  const std::string path = dir.file("checkpoint.safetensors");
  save_safetensors(path,
                   {{"layer1.0.conv1.weight", Tensor::zeros({64, 64, 1, 1})},
                    {"layer1.0.bn1.weight", Tensor::full({64}, 1.0)},
                    {"fc.bias", Tensor::zeros({10}, DType::f64)}},
                   {{"step", "10"}});
  const SafetensorsFile f = load_safetensors(path);

  CHECK(f.contains("fc.bias"));
  CHECK_FALSE(f.contains("fc.weight"));
  CHECK(f.names() == std::vector<std::string>{"layer1.0.conv1.weight", "layer1.0.bn1.weight", "fc.bias"});
  CHECK(f.get("layer1.0.bn1.weight", {64}, DType::f32).to_vector<float>() == std::vector<float>(64, 1.0f));
  CHECK_THROWS_WITH(f.get("layer1.0.conv1.weight", {64, 64, 3, 3}, DType::f32),
                    Contains(path + ": tensor 'layer1.0.conv1.weight' expected f32[64, 64, 3, 3], got "
                                    "f32[64, 64, 1, 1]"));
  CHECK_THROWS_WITH(f.get("fc.bias", {10}, DType::f32),
                    Contains(path + ": tensor 'fc.bias' expected f32[10], got f64[10]"));
  // A missing name lists the closest names first.
  CHECK_THROWS_WITH(f.get("encoder.layer1.0.conv2.weight"),
                    Contains(path + ": no tensor named 'encoder.layer1.0.conv2.weight'") &&
                        Contains("3 tensors") && Contains("'layer1.0.conv1.weight'"));
  CHECK_THROWS_WITH(f.get("layer1.0.conv2.weight"), Contains("closest: 'layer1.0.conv1.weight'"));

  // copy_to: into a parameter's window of a flat buffer.
  Tensor flat = Tensor::full({74}, 7.0);
  f.copy_to("layer1.0.bn1.weight", flat.window(10, {64}));
  const std::vector<float> v = flat.to_vector<float>();
  CHECK(v[9] == 7.0f);
  CHECK(v[10] == 1.0f);
  CHECK(v[73] == 1.0f);
  CHECK_THROWS_WITH(f.copy_to("layer1.0.bn1.weight", Tensor::zeros({32})),
                    Contains("expected f32[32], got f32[64]"));

  CHECK(f.metadata_value("step") == "10");
  CHECK(f.has_metadata("step"));
  CHECK_THROWS_WITH(f.metadata_value("epoch"), Contains(path) && Contains("no metadata entry 'epoch'"));
}

// ------------------------------------------------------------------------------------------------
// Corrupt files
// ------------------------------------------------------------------------------------------------

TEST_CASE("unreadable, short and oversized-header files are rejected naming the file", "[io]") {
  TempDir dir;
  const std::string missing = dir.file("missing.safetensors");
  CHECK_THROWS_WITH(load_safetensors(missing),
                    Contains(missing) && Contains("cannot open") && Contains("No such file or directory"));
  CHECK_THROWS_WITH(load_safetensors(dir.path.string()), Contains("not a regular file"));

  const std::string path = dir.file("bad.safetensors");
  for (size_t n : {0, 1, 7}) {
    write_bytes(path, std::string(n, '\x01'));
    CHECK_THROWS_WITH(load_safetensors(path), Contains(path) && Contains("shorter than the 8-byte"));
  }
  write_bytes(path, le64(100'000'001) + std::string("{}"));
  CHECK_THROWS_WITH(load_safetensors(path), Contains(path) && Contains("exceeds the 100000000-byte limit"));
  write_bytes(path, le64(~uint64_t{0}));
  CHECK_THROWS_WITH(load_safetensors(path), Contains(path) && Contains("exceeds"));
  write_bytes(path, le64(64) + std::string("{}"));
  CHECK_THROWS_WITH(load_safetensors(path),
                    Contains(path) && Contains("header length 64 is larger than the 2"));
}

TEST_CASE("malformed headers are rejected naming the file and the problem", "[io]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";
  struct Case {
    std::string header, data, reason;
  };
  const std::vector<Case> cases = {
      {"", "", "not valid JSON"},
      {"{\"a\":", "", "not valid JSON"},
      {"not json", "", "not valid JSON"},
      {"{\"a\":\"\xff\"}", "", "not valid JSON"},  // invalid UTF-8
      {"[1, 2]", "", "header is a JSON array, expected an object"},
      {std::string("{}\0\0", 4), "", "NUL byte"},
      {R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
       "xy", "the key 'a' twice"},
      {R"({"__metadata__":{"k":"1","k":"2"}})", "", "the key 'k' twice"},
      {R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd",
       "tensor 'a' has dtype \"F16\", which byol.cpp does not support"},
      {R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x'),
       "dtype must be a string"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd",
       "tensor 'a': F32[2] needs 8 bytes, but data_offsets [0, 4] hold 4"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, 'x'),
       "shape entries must be non-negative integers, got -2"},
      {R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", std::string(8, 'x'),
       "shape entries must be non-negative integers, got 2.0"},
      {R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", std::string(8, 'x'),
       "shape must be an array"},
      {R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", std::string(8, 'x'),
       "is too large"},
      {R"({"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", "", "is too large"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, 'x'),
       "end before they begin"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, 'x'),
       "data_offsets must be [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, 'x'), "tensor 'a' has no \"data_offsets\""},
      {R"({"a":[1,2]})", "", "tensor 'a': expected an object"},
      {R"({"__metadata__":{"step":3}})", "", "entry 'step' must be a string, got 3"},
      {R"({"__metadata__":["x"]})", "", "\"__metadata__\" must be an object of strings"},
      // Byte ranges: overlap, hole, past the end, trailing bytes.
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 + R"(,"data_offsets":[4,12]}})",
       std::string(12, 'x'), "tensor 'b' (bytes [4, 12)) overlaps tensor 'a' (bytes [0, 8))"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 + R"(,"data_offsets":[0,8]}})",
       std::string(8, 'x'), "overlaps"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 + R"(,"data_offsets":[12,20]}})",
       std::string(20, 'x'), "4 bytes of the data section before tensor 'b' belong to no tensor"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[4,12]}})", std::string(12, 'x'),
       "4 bytes of the data section before tensor 'a'"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]}})", std::string(6, 'x'),
       "truncated or corrupt: tensor 'a' needs bytes [0, 8) of the data section, which has only 6 bytes"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[1000000000000,1000000000008]}})", "",
       "tensor 'a' needs bytes [1000000000000, 1000000000008) of the data section, which has only 0"},
      {"{\"a\":{" + f32x2 + R"(,"data_offsets":[0,8]}})", std::string(9, 'x'),
       "1 bytes after the last tensor belong to no tensor"},
      {"{}", "junk", "4 bytes after the last tensor"},
  };
  for (const Case& c : cases) {
    INFO("header: " << c.header);
    write_bytes(path, safetensors_bytes(c.header, c.data));
    CHECK_THROWS_WITH(load_safetensors(path), Contains(path) && Contains(c.reason));
  }
}

TEST_CASE("a valid header tolerates any tensor order and trailing spaces", "[io]") {
  TempDir dir;
  const std::string path = dir.file("ok.safetensors");
  // Listed out of offset order, with a 0-byte tensor between two others and an unknown extra field.
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]},"e":{"dtype":"I64","shape":[0],)"
      R"("data_offsets":[1,1]},"a":{"dtype":"U8","shape":[],"data_offsets":[0,1],"extra":1}})"
      "   ";
  write_bytes(path, safetensors_bytes(header, "\x07\x08\x09"));
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.names() == std::vector<std::string>{"a", "e", "b"});
  CHECK(f.get("a", {}, DType::u8).item() == 7.0);
  CHECK(f.get("b").to_vector<uint8_t>() == std::vector<uint8_t>{8, 9});
  CHECK(f.get("e", {0}, DType::i64).numel() == 0);
}

TEST_CASE("a file cut short at any byte, or with bytes flipped, is an error and never a crash", "[io]") {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  std::mt19937_64 gen(3);
  save_safetensors(good,
                   {{"w", random_bits({4, 3}, DType::f32, gen)}, {"n", random_bits({5}, DType::i64, gen)}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  const std::string path = dir.file("cut.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(path, bytes.substr(0, n));
    INFO("cut at " << n);
    CHECK_THROWS_AS(load_safetensors(path), Error);
  }
  write_bytes(path, bytes.substr(0, bytes.size() - 1));
  CHECK_THROWS_WITH(load_safetensors(path), Contains(path) && Contains("truncated"));

  // Flipped bytes: the reader either rejects the file with an Error or loads something well formed.
  for (int trial = 0; trial < 2000; ++trial) {
    std::string corrupt = bytes;
    const int flips = 1 + static_cast<int>(gen() % 3);
    for (int i = 0; i < flips; ++i) corrupt[gen() % corrupt.size()] ^= static_cast<char>(1 + gen() % 255);
    write_bytes(path, corrupt);
    try {
      const SafetensorsFile f = load_safetensors(path);
      for (const auto& [name, t] : f.tensors()) CHECK(t.numel() * int64_t(dtype_size(t.dtype())) <= 160);
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(path));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Writing: argument errors and atomicity
// ------------------------------------------------------------------------------------------------

TEST_CASE("bad arguments to save are rejected before the file is touched", "[io]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", Tensor::full({3}, 1.0)}});
  const std::string before = read_bytes(path);
  const Tensor t = Tensor::zeros({2});

  CHECK_THROWS_WITH(save_safetensors(path, {{"a", t}, {"b", t}, {"a", t}}),
                    Contains(path) && Contains("duplicate tensor name 'a'"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", t}}), Contains(path) && Contains("reserved"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"a", Tensor()}}),
                    Contains(path) && Contains("'a' is undefined"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"bad\xff", t}}), Contains(path) && Contains("not valid UTF-8"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"a", t}}, {{"k", "\xc3"}}),
                    Contains(path) && Contains("metadata entry 'k' is not valid UTF-8"));

  CHECK(read_bytes(path) == before);
  CHECK(dir.entries() == std::set<std::string>{"ckpt.safetensors"});
}

TEST_CASE("saving replaces the previous file and leaves no temporary file", "[io]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", Tensor::full({3}, 1.0)}}, {{"step", "1"}});
  save_safetensors(path, {{"b", Tensor::full({2}, 2.0, DType::f64)}}, {{"step", "2"}});
  const SafetensorsFile f = load_safetensors(path);
  CHECK(f.names() == std::vector<std::string>{"b"});
  CHECK(f.metadata_value("step") == "2");
  CHECK(dir.entries() == std::set<std::string>{"ckpt.safetensors"});

  // A relative path (no directory part) works too: the temporary file goes in the working directory.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir.path);
  save_safetensors("relative.safetensors", {{"a", Tensor::zeros({1})}});
  fs::current_path(cwd);
  CHECK(dir.entries() == std::set<std::string>{"ckpt.safetensors", "relative.safetensors"});
}

TEST_CASE("a save killed mid-write leaves a temporary file that remove_stale_temporaries removes", "[io]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", Tensor::full({3}, 1.0)}});
  const std::string before = read_bytes(path);
  const NamedTensors big = {{"w", Tensor::zeros({1 << 16})}};  // 256 KiB of data
  // A child killed by SIGXFSZ (its default action) at 64 KiB: no destructor runs, as under SIGKILL.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    struct rlimit no_core {
    }, small{};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::getrlimit(RLIMIT_FSIZE, &small);
    small.rlim_cur = 64 << 10;
    ::setrlimit(RLIMIT_FSIZE, &small);
    std::signal(SIGXFSZ, SIG_DFL);
    try {
      save_safetensors(path, big);
    } catch (...) {
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  const std::set<std::string> left = dir.entries();
  REQUIRE(left.size() == 2);  // the target and the temporary file
  const std::string temporary =
      *std::find_if(left.begin(), left.end(), [](const std::string& n) { return n != "ckpt.safetensors"; });
  CHECK(temporary.rfind(".ckpt.safetensors.tmp-", 0) == 0);
  // Files that only resemble the pattern stay.
  for (const char* keep : {"ckpt.safetensors.tmp-1-2-ab", ".ckpt.safetensors.tmp-x-2-ab", ".tmp-1-2-ab",
                           ".ckpt.safetensors.tmp-1-2-", ".ckpt.safetensors.tmp-1-2-xyz"})
    std::ofstream(dir.file(keep)) << "x";
  CHECK(remove_stale_temporaries(dir.path.string()) == std::vector<std::string>{dir.file(temporary)});
  CHECK(dir.entries().size() == 6);
  CHECK(dir.entries().count("ckpt.safetensors") == 1);
  CHECK(read_bytes(path) == before);
  CHECK(remove_stale_temporaries(dir.path.string()).empty());
  CHECK(remove_stale_temporaries(dir.file("missing")).empty());
}

TEST_CASE("a save that fails leaves the previous file intact and no temporary file", "[io]") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"a", Tensor::full({3}, 1.0)}});
  const std::string before = read_bytes(path);
  const NamedTensors big = {{"w", Tensor::zeros({1 << 16})}};  // 256 KiB of data

  SECTION("the target's directory does not exist") {
    const std::string nowhere = dir.file("no/such/dir/ckpt.safetensors");
    CHECK_THROWS_WITH(save_safetensors(nowhere, big), Contains(nowhere) &&
                                                          Contains("cannot create a temporary file") &&
                                                          Contains("No such file or directory"));
  }
  SECTION("the target is a directory, so the final rename fails") {
    const std::string target = dir.file("a_directory");
    fs::create_directory(target);
    CHECK_THROWS_WITH(save_safetensors(target, big),
                      Contains(target) && Contains("cannot rename") && Contains("Is a directory"));
    CHECK(fs::is_directory(target));
    CHECK(fs::is_empty(target));
    fs::remove(target);
  }
  SECTION("a write fails halfway (file size limit: EFBIG)") {
    // RLIMIT_FSIZE stops any write past 64 KiB, root included; SIGXFSZ ignored turns it into EFBIG.
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 64 << 10;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      save_safetensors(path, big);
    } catch (const Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    CHECK_THAT(message, Contains(path) && Contains("write failed") && Contains(std::strerror(EFBIG)));
  }
  SECTION("the directory is not writable") {
    if (::geteuid() == 0) {
      WARN("skipped: running as root, which may write to a read-only directory");
    } else {
      fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
      CHECK_THROWS_WITH(save_safetensors(path, big), Contains(path) &&
                                                         Contains("cannot create a temporary file") &&
                                                         Contains(std::strerror(EACCES)));
      fs::permissions(dir.path, fs::perms::owner_all);
    }
  }

  CHECK(read_bytes(path) == before);
  CHECK(dir.entries() == std::set<std::string>{"ckpt.safetensors"});
}
