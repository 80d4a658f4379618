// Bad input: every error names the file and says what was expected. The tests write the bad files.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <set>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/packed.h"
#include "data_test_util.h"

using namespace byol::data;
using byol::data::testing::smooth_image;
using byol::data::testing::TempDir;
using byol::data::testing::write_bytes;
using Catch::Contains;

namespace {

std::vector<uint8_t> idx_header(uint32_t magic, std::vector<uint32_t> dims) {
  std::vector<uint8_t> out;
  for (uint32_t v : std::vector<uint32_t>{magic}) dims.insert(dims.begin(), v);
  for (uint32_t v : dims)
    for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
  return out;
}

// Appends `v` little-endian (the packed index's byte order).
template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
  for (size_t i = 0; i < sizeof v; ++i) out.push_back(uint8_t(uint64_t(v) >> (8 * i)));
}

// A packed index header: magic, version 1, `shards`, `count`, `classes`, 0 (class names and records
// follow, appended by the caller).
std::vector<uint8_t> pack_header(uint32_t shards, uint64_t count, uint32_t classes) {
  std::vector<uint8_t> out = {'B', 'Y', 'O', 'L', 'P', 'A', 'K', '1'};
  put_le<uint32_t>(out, 1), put_le(out, shards), put_le(out, count), put_le(out, classes);
  put_le<uint32_t>(out, 0);
  return out;
}

void put_record(std::vector<uint8_t>& out, uint32_t height, uint32_t width, uint32_t channels,
                uint64_t offset) {
  put_le<uint32_t>(out, 0), put_le(out, height), put_le(out, width), put_le(out, channels);
  put_le(out, offset), put_le<int64_t>(out, -1);
}

}  // namespace

TEST_CASE("truncated and corrupt JPEG / PNG files are errors naming the file", "[data_errors]") {
  if (!jpeg_supported() || !png_supported()) {
    WARN("SKIPPED: this build lacks libjpeg or libpng");
    return;
  }
  TempDir tmp;
  const auto img = smooth_image(32, 32, 3);
  std::vector<uint8_t> jpg = encode_jpeg(img.view(), 90), png = encode_png(img.view());
  jpg.resize(jpg.size() / 2);  // truncated: libjpeg would pad the rest with gray and only warn
  write_bytes(tmp / "bad/c/truncated.jpg", jpg);
  png[png.size() / 2] ^= 0x5A;  // a flipped byte inside the image data: CRC mismatch
  write_bytes(tmp / "bad/c/corrupt.png", png);
  write_bytes(tmp / "bad/c/text.jpg", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  std::vector<uint8_t> short_png = encode_png(img.view());
  short_png.resize(60);
  write_bytes(tmp / "bad/c/short.png", short_png);
  ImageFolder f(tmp / "bad");
  std::vector<uint8_t> scratch;
  REQUIRE(f.size() == 4);  // corrupt.png, short.png, text.jpg, truncated.jpg
  CHECK_THROWS_WITH(f.image(0, scratch), Contains(tmp / "bad/c/corrupt.png") && Contains("corrupt"));
  CHECK_THROWS_WITH(f.image(1, scratch), Contains(tmp / "bad/c/short.png") && Contains("PNG"));
  CHECK_THROWS_WITH(f.image(2, scratch), Contains(tmp / "bad/c/text.jpg") && Contains("expected a JPEG"));
  CHECK_THROWS_WITH(f.image(3, scratch), Contains(tmp / "bad/c/truncated.jpg") && Contains("truncated JPEG"));
}

TEST_CASE("JPEG / PNG headers claiming more than max_image_pixels are errors before any allocation",
          "[data_errors]") {
  if (!jpeg_supported() || !png_supported()) {
    WARN("SKIPPED: this build lacks libjpeg or libpng");
    return;
  }
  const auto img = smooth_image(8, 8, 1);
  // A PNG whose IHDR (width at byte 16, height at 20, CRC over bytes 12..28) claims 100000 x 100000:
  // PNG_IMAGE_SIZE would wrap to 4.2 GB, allocated before libpng notices the missing rows.
  std::vector<uint8_t> png = encode_png(img.view());
  for (int at : {16, 20})
    for (int s = 0; s < 4; ++s) png[at + s] = uint8_t(100000u >> (24 - 8 * s));
  const uint32_t crc = uint32_t(crc32(0, png.data() + 12, 17));
  for (int s = 0; s < 4; ++s) png[29 + s] = uint8_t(crc >> (24 - 8 * s));
  // A JPEG whose SOF0 (FF C0, length, precision, height, width) claims 65500 x 65500: 12.9 GB of RGB.
  std::vector<uint8_t> jpg = encode_jpeg(img.view(), 90);
  size_t sof = 0;
  while (sof + 9 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
  REQUIRE(sof + 9 < jpg.size());
  for (size_t at : {sof + 5, sof + 7}) jpg[at] = 0xFF, jpg[at + 1] = 0xDC;
  std::vector<uint8_t> out;
  CHECK_THROWS_WITH(decode_image(png.data(), png.size(), out, "forged.png"),
                    Contains("forged.png") && Contains("PNG header claims 100000x100000") &&
                        Contains("more than the limit of 268435456"));
  CHECK(out.capacity() == 0);
  CHECK_THROWS_WITH(decode_image(jpg.data(), jpg.size(), out, "forged.jpg"),
                    Contains("forged.jpg") && Contains("JPEG header claims 65500x65500"));
  CHECK_THROWS_WITH(decode_image(jpg.data(), jpg.size(), out, "forged.jpg", 32),  // DCT scaling too
                    Contains("forged.jpg") && Contains("JPEG header claims 65500x65500"));
  CHECK(out.capacity() == 0);
  // The limit is a setting: 63 pixels rejects the real 8x8 images, 64 takes them.
  const std::vector<uint8_t> real_png = encode_png(img.view()), real_jpg = encode_jpeg(img.view(), 90);
  set_max_image_pixels(63);
  CHECK_THROWS_WITH(decode_image(real_png.data(), real_png.size(), out, "real.png"),
                    Contains("real.png") && Contains("8x8 = 64 pixels, more than the limit of 63"));
  CHECK_THROWS_WITH(decode_image(real_jpg.data(), real_jpg.size(), out, "real.jpg"), Contains("real.jpg"));
  set_max_image_pixels(64);
  CHECK(decode_image(real_png.data(), real_png.size(), out, "real.png").height == 8);
  CHECK(decode_image(real_jpg.data(), real_jpg.size(), out, "real.jpg").width == 8);
  set_max_image_pixels(kDefaultMaxImagePixels);
  CHECK_THROWS_WITH(set_max_image_pixels(0), Contains("expected >= 1"));
}

TEST_CASE("IDX files with a wrong magic number or size are errors naming the file", "[data_errors]") {
  TempDir tmp;
  std::vector<uint8_t> images = idx_header(0x00000803, {2, 2, 2});
  images.resize(images.size() + 8, 1);
  write_bytes(tmp / "ok-images", images);
  std::vector<uint8_t> wrong = idx_header(0x00000801, {2, 2, 2});  // a labels magic on an images file
  wrong.resize(wrong.size() + 8, 1);
  write_bytes(tmp / "wrong-magic", wrong);
  CHECK_THROWS_WITH(load_idx(tmp / "wrong-magic", ""), Contains(tmp / "wrong-magic") &&
                                                           Contains("expected magic number 0x00000803") &&
                                                           Contains("got 0x00000801"));
  std::vector<uint8_t> short_images = idx_header(0x00000803, {2, 2, 2});
  short_images.resize(short_images.size() + 5);
  write_bytes(tmp / "short", short_images);
  CHECK_THROWS_WITH(load_idx(tmp / "short", ""), Contains(tmp / "short") && Contains("expected 24 bytes"));
  std::vector<uint8_t> labels = idx_header(0x00000801, {3});
  labels.resize(labels.size() + 3);
  write_bytes(tmp / "labels3", labels);
  CHECK_THROWS_WITH(load_idx(tmp / "ok-images", tmp / "labels3"),
                    Contains(tmp / "labels3") && Contains("expected 2 labels"));
  write_bytes(tmp / "bad.gz", {0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02});  // gzip magic, then garbage
  CHECK_THROWS_WITH(load_idx(tmp / "bad.gz", ""), Contains(tmp / "bad.gz"));
}

TEST_CASE("IDX shapes that wrap around or have no rows or columns are errors naming the file",
          "[data_errors]") {
  TempDir tmp;
  // 2^31 x 2^31 x 4 = 2^64 wraps to 0, the size of this file's (empty) pixel data.
  write_bytes(tmp / "wraps", idx_header(0x00000803, {0x80000000u, 0x80000000u, 4}));
  CHECK_THROWS_WITH(load_idx(tmp / "wraps", ""),
                    Contains(tmp / "wraps") && Contains("shape 2147483648 x 2147483648 x 4") &&
                        Contains("needs more than 2^64 bytes (the file has 16)"));
  write_bytes(tmp / "no-rows", idx_header(0x00000803, {5, 0, 28}));
  CHECK_THROWS_WITH(load_idx(tmp / "no-rows", ""),
                    Contains(tmp / "no-rows") && Contains("0 rows and 28 columns, expected 1.."));
  write_bytes(tmp / "no-cols", idx_header(0x00000803, {5, 28, 0}));
  CHECK_THROWS_WITH(load_idx(tmp / "no-cols", ""),
                    Contains(tmp / "no-cols") && Contains("28 rows and 0 columns"));
  // No images, but rows beyond int: nothing to read, still not a dataset of -1-row images.
  write_bytes(tmp / "huge-rows", idx_header(0x00000803, {0, 0xFFFFFFFFu, 1}));
  CHECK_THROWS_WITH(load_idx(tmp / "huge-rows", ""),
                    Contains(tmp / "huge-rows") && Contains("4294967295 rows"));
}

TEST_CASE("a CIFAR file of the wrong size is an error naming the file", "[data_errors]") {
  TempDir tmp;
  write_bytes(tmp / "c/test_batch.bin", std::vector<uint8_t>(3073 * 2 + 5));
  CHECK_THROWS_WITH(load_cifar10(tmp / "c", Split::test), Contains(tmp / "c/test_batch.bin") &&
                                                              Contains("expected a multiple of 3073 bytes") &&
                                                              Contains("got 6151 bytes"));
  write_bytes(tmp / "c/test.bin", std::vector<uint8_t>(3073 * 2));  // CIFAR-10 sized records as CIFAR-100
  CHECK_THROWS_WITH(load_cifar100(tmp / "c", Split::test), Contains("multiple of 3074"));
  std::vector<uint8_t> bad_label(3073, 0);
  bad_label[0] = 12;
  write_bytes(tmp / "d/test_batch.bin", bad_label);
  CHECK_THROWS_WITH(load_cifar10(tmp / "d", Split::test), Contains("label 12") && Contains("expected < 10"));
  write_bytes(tmp / "s/train_X.bin", std::vector<uint8_t>(27648 + 1));
  CHECK_THROWS_WITH(load_stl10(tmp / "s", Split::train),
                    Contains(tmp / "s/train_X.bin") && Contains("multiple of 27648"));
}

TEST_CASE("an empty class folder and missing paths are errors naming them", "[data_errors]") {
  TempDir tmp;
  write_bytes(tmp / "root/a/x.png", {1, 2, 3});
  std::filesystem::create_directories(tmp / "root/b");
  write_bytes(tmp / "root/c/readme.txt", {1});
  CHECK_THROWS_WITH(ImageFolder(tmp / "root"),
                    Contains(tmp / "root/b") && Contains("has no .jpg/.jpeg/.png images"));
  CHECK_THROWS_WITH(ImageFolder(tmp / "missing"), Contains(tmp / "missing") && Contains("does not exist"));
  std::filesystem::create_directories(tmp / "empty");
  CHECK_THROWS_WITH(ImageFolder(tmp / "empty"),
                    Contains(tmp / "empty") && Contains("no .jpg/.jpeg/.png images"));
  CHECK_THROWS_WITH(load_cifar10(tmp / "nowhere", Split::train),
                    Contains(tmp / "nowhere/data_batch_1.bin") && Contains("cannot open"));
  CHECK_THROWS_WITH(load_idx(tmp / "none.gz", ""), Contains(tmp / "none.gz") && Contains("cannot open"));
  CHECK_THROWS_WITH(load_fashion_mnist(tmp / "nofm", Split::train),
                    Contains(tmp / "nofm/train-images-idx3-ubyte"));
  CHECK_THROWS_WITH(PackedDataset(tmp / "nopack"), Contains(tmp / "nopack.index"));
  CHECK_THROWS_WITH(open_dataset(tmp / "nodir"), Contains(tmp / "nodir"));
}

TEST_CASE("a truncated pack shard or a foreign index is an error naming the file", "[data_errors]") {
  TempDir tmp;
  const auto img = smooth_image(4, 4, 3);
  {
    PackWriter w(tmp / "p", {});
    w.add(img.view(), -1);
    w.add(img.view(), -1);
    w.finish();
  }
  std::filesystem::resize_file(tmp / "p-00000.bin", 40);
  CHECK_THROWS_WITH(PackedDataset(tmp / "p"), Contains(tmp / "p-00000.bin") && Contains("truncated"));
  write_bytes(tmp / "q.index", {'n', 'o', 'p', 'e', 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK_THROWS_WITH(PackedDataset(tmp / "q"), Contains(tmp / "q.index") && Contains("BYOLPAK1"));
}

TEST_CASE("forged packed index fields are errors naming the file and the field, before any allocation",
          "[data_errors]") {
  TempDir tmp;
  write_bytes(tmp / "p-00000.bin", std::vector<uint8_t>(16, 7));
  // A class name of 4 GB in an index of 36 bytes.
  std::vector<uint8_t> name = pack_header(1, 0, 1);
  put_le<uint32_t>(name, 0xFFFFFFFFu);
  write_bytes(tmp / "p.index", name);
  CHECK_THROWS_WITH(PackedDataset(tmp / "p"),
                    Contains(tmp / "p.index") && Contains("class 0 has a name of 4294967295 bytes"));
  // 2^59 records of 32 bytes: 2^64 bytes wrap to the 0 bytes that follow the header.
  write_bytes(tmp / "p.index", pack_header(1, uint64_t(1) << 59, 0));
  CHECK_THROWS_WITH(PackedDataset(tmp / "p"),
                    Contains(tmp / "p.index") && Contains("field 'count' is 576460752303423488"));
  // offset + 1 byte wraps to 0.
  std::vector<uint8_t> offset = pack_header(1, 1, 0);
  put_record(offset, 1, 1, 1, ~uint64_t(0));
  write_bytes(tmp / "p.index", offset);
  CHECK_THROWS_WITH(PackedDataset(tmp / "p"),
                    Contains(tmp / "p.index") && Contains("record 0 (field 'offset' 18446744073709551615"));
  // (2^32 - 1)^2 x 3 wraps to 2^64 - 3 * 2^33 + 3; this offset wraps the sum to 0: a -1x-1 image.
  std::vector<uint8_t> side = pack_header(1, 1, 0);
  put_record(side, 0xFFFFFFFFu, 0xFFFFFFFFu, 3, 3 * (uint64_t(1) << 33) - 3);
  write_bytes(tmp / "p.index", side);
  CHECK_THROWS_WITH(
      PackedDataset(tmp / "p"),
      Contains(tmp / "p.index") && Contains("record 0 has fields 'height' x 'width' 4294967295x4294967295"));
  // The well-formed version of the same index reads.
  std::vector<uint8_t> good = pack_header(1, 1, 0);
  put_record(good, 2, 2, 3, 4);
  write_bytes(tmp / "p.index", good);
  CHECK(PackedDataset(tmp / "p").size() == 1);
}

TEST_CASE("a corrupt image stops the loader with its name, or is skipped and reported", "[data_errors]") {
  if (!png_supported()) {
    WARN("SKIPPED: this build lacks libpng");
    return;
  }
  TempDir tmp;
  for (int i = 0; i < 10; ++i)
    write_bytes(tmp / ("root/c/" + std::to_string(i) + ".png"),
                encode_png(smooth_image(12, 12, 3, i).view()));
  std::vector<uint8_t> bad = encode_png(smooth_image(12, 12, 3).view());
  bad.resize(bad.size() - 30);
  write_bytes(tmp / "root/c/3.png", bad);
  write_bytes(tmp / "root/c/7.png", {0xFF, 0xD8, 0xFF, 0x00});
  auto ds = std::make_shared<ImageFolder>(tmp / "root");
  const AugmentOptions aug = AugmentOptions::byol(8, Normalization::imagenet());
  {
    Loader strict(ds, aug, {.batch_size = 5, .workers = 2, .shuffle = false});
    strict.start_epoch(0);
    CHECK_THROWS_WITH(strict.next(), Contains(tmp / "root/c/3.png"));
    CHECK_THROWS_WITH(strict.next(), Contains(tmp / "root/c/7.png"));
  }
  Loader lenient(
      ds, aug,
      {.batch_size = 5, .workers = 2, .shuffle = false, .skip_corrupt = true, .report_skipped = false});
  lenient.start_epoch(0);
  int batches = 0;
  while (auto b = lenient.next()) {
    ++batches;
    CHECK(b->size() == 5);
    for (int64_t i : b->indices) CHECK((i != 3 && i != 7));
  }
  CHECK(batches == 2);
  const std::vector<SkippedImage> skipped = lenient.skipped();
  REQUIRE(skipped.size() == 2);
  std::set<std::string> names{skipped[0].name, skipped[1].name};
  CHECK(names == std::set<std::string>{tmp / "root/c/3.png", tmp / "root/c/7.png"});
}

TEST_CASE("standard exceptions from the file system and from sizes become errors naming the input",
          "[data_errors]") {
  // Issue 14, finding 9: a std::filesystem_error, std::bad_alloc or std::length_error escaped the readers
  // without saying which dataset, file or key it came from.
  TempDir tmp;
  write_bytes(tmp / "root/cat/a.png", {1, 2, 3});
  std::filesystem::create_symlink(tmp / "root/loop", tmp / "root/loop");  // ELOOP when its status is read
  const std::string root = tmp / "root";
  CHECK_THROWS_AS(ImageFolder(root), byol::Error);
  CHECK_THROWS_WITH(ImageFolder(root), Contains("ImageFolder: '" + root + "'") && Contains("loop"));
  CHECK_THROWS_AS(open_dataset("folder:" + root), byol::Error);
  CHECK_THROWS_WITH(open_dataset("folder:" + root), Contains(root + "/loop"));

  // with_context itself, for each kind of standard exception a reader can meet.
  auto fails_with = [](auto thrower, const std::string& says) {
    CHECK_THROWS_AS(byol::with_context("input.bin", thrower), byol::Error);
    CHECK_THROWS_WITH(byol::with_context("input.bin", thrower), Contains("input.bin: ") && Contains(says));
  };
  fails_with([]() -> int { throw std::bad_alloc(); }, "out of memory");
  fails_with([] { std::vector<int>().reserve(size_t(-1)); }, "std::length_error");
  fails_with([] { (void)std::stoll("abc"); }, "not valid");
  fails_with([] { (void)std::stoll("99999999999999999999999"); }, "out of range");
  fails_with([] { return std::filesystem::file_size("/nonexistent/byol/file"); }, "/nonexistent/byol/file");
  // A byol::Error passes unchanged, and a value comes back.
  CHECK_THROWS_WITH(byol::with_context("input.bin", [] { BYOL_FAIL("own message"); }), Contains("own message"));
  CHECK(byol::with_context("input.bin", [] { return 7; }) == 7);
}
