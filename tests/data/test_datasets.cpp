// Datasets: codecs, image folders (plain and archived), CIFAR / STL-10 / IDX binaries written by the
// tests, synthetic data, subsets and splits, the packed format and the dataset specs.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <cstring>
#include <set>

#include "data/dataset.h"
#include "data/packed.h"
#include "data_test_util.h"

#if BYOL_TEST_PNG
#include <png.h>
#endif

using namespace byol::data;
using byol::data::testing::smooth_image;
using byol::data::testing::TempDir;
using byol::data::testing::write_bytes;

namespace {

// A minimal ustar writer (independent of the reader under test).
void tar_add(std::vector<uint8_t>& tar, const std::string& name, const std::vector<uint8_t>& data,
             char type = '0') {
  uint8_t h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 99));
  std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", 0644);
  std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011o", unsigned(data.size()));
  std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
  h[156] = uint8_t(type);
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (uint8_t b : h) sum += b;
  std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
  tar.insert(tar.end(), h, h + 512);
  tar.insert(tar.end(), data.begin(), data.end());
  tar.resize((tar.size() + 511) / 512 * 512, 0);
}

void write_gz(const std::string& path, const std::vector<uint8_t>& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, data.data(), unsigned(data.size())) == int(data.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

std::vector<uint8_t> pixels_of(const Dataset& d, int64_t i) {
  std::vector<uint8_t> scratch;
  const ImageView v = d.image(i, scratch);
  return std::vector<uint8_t>(v.data, v.data + v.bytes());
}

}  // namespace

TEST_CASE("JPEG and PNG decode to RGB; gray images are replicated into three channels", "[datasets]") {
  if (!jpeg_supported() || !png_supported()) {
    WARN("SKIPPED: this build lacks libjpeg or libpng");
    return;
  }
  const auto rgb = smooth_image(24, 40, 3);
  std::vector<uint8_t> out;
  const std::vector<uint8_t> png = encode_png(rgb.view());
  CHECK(sniff_format(png.data(), png.size()) == ImageFormat::png);
  ImageView v = decode_image(png.data(), png.size(), out, "rgb.png");
  REQUIRE((v.height == 24 && v.width == 40 && v.channels == 3));
  CHECK(std::equal(rgb.pixels.begin(), rgb.pixels.end(), v.data));  // lossless

  byol::data::testing::TestImage ramp{std::vector<uint8_t>(24 * 40 * 3), 24, 40, 3};  // no edges
  for (int i = 0; i < 24 * 40; ++i)
    for (int c = 0; c < 3; ++c) ramp.pixels[3 * i + c] = uint8_t(40 + 2 * (i / 40) + 3 * (i % 40) + 20 * c);
  const std::vector<uint8_t> jpg = encode_jpeg(ramp.view(), 95);
  CHECK(sniff_format(jpg.data(), jpg.size()) == ImageFormat::jpeg);
  v = decode_image(jpg.data(), jpg.size(), out, "rgb.jpg");
  REQUIRE((v.height == 24 && v.width == 40 && v.channels == 3));
  double err = 0;
  for (size_t i = 0; i < ramp.pixels.size(); ++i) err += std::abs(int(v.data[i]) - int(ramp.pixels[i]));
  CHECK(err / ramp.pixels.size() < 2.0);  // quality 95 on a smooth ramp

  const auto gray = smooth_image(16, 12, 1);
  for (const std::vector<uint8_t>& bytes : {encode_png(gray.view()), encode_jpeg(gray.view(), 100)}) {
    v = decode_image(bytes.data(), bytes.size(), out, "gray");
    REQUIRE((v.height == 16 && v.width == 12 && v.channels == 3));
    for (int i = 0; i < 16 * 12; ++i) {
      CHECK(v.data[3 * i] == v.data[3 * i + 1]);
      CHECK(v.data[3 * i] == v.data[3 * i + 2]);
      CHECK(std::abs(int(v.data[3 * i]) - int(gray.pixels[i])) <= 2);
    }
  }
}

#if BYOL_TEST_PNG
TEST_CASE("palette PNGs decode to their palette colours", "[datasets]") {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = 4;
  img.height = 2;
  img.format = PNG_FORMAT_RGB_COLORMAP;
  img.colormap_entries = 3;
  const uint8_t palette[9] = {255, 0, 0, 0, 128, 0, 10, 20, 30};
  const uint8_t indices[8] = {0, 1, 2, 0, 2, 2, 1, 0};
  png_alloc_size_t size = 0;
  REQUIRE(png_image_write_to_memory(&img, nullptr, &size, 0, indices, 0, palette));
  std::vector<uint8_t> bytes(size);
  REQUIRE(png_image_write_to_memory(&img, bytes.data(), &size, 0, indices, 0, palette));
  std::vector<uint8_t> out;
  const ImageView v = decode_image(bytes.data(), size, out, "palette.png");
  REQUIRE((v.height == 2 && v.width == 4 && v.channels == 3));
  for (int i = 0; i < 8; ++i)
    for (int c = 0; c < 3; ++c) CHECK(v.data[3 * i + c] == palette[3 * indices[i] + c]);
}
#endif

TEST_CASE("JPEG DCT downscaling picks the smallest scale n/8 that keeps the shorter side >= min_side",
          "[datasets]") {
  if (!jpeg_supported()) {
    WARN("SKIPPED: this build lacks libjpeg");
    return;
  }
  const auto img = smooth_image(64, 80, 3);
  const std::vector<uint8_t> jpg = encode_jpeg(img.view(), 90);
  std::vector<uint8_t> out;
  for (auto [min_side, want_h, want_w] : {std::tuple{0, 64, 80},
                                          {16, 16, 20},
                                          {17, 24, 30},
                                          {20, 24, 30},
                                          {33, 40, 50},
                                          {60, 64, 80},
                                          {500, 64, 80}}) {
    const ImageView v = decode_image(jpg.data(), jpg.size(), out, "scaled.jpg", min_side);
    CHECK(v.height == want_h);
    CHECK(v.width == want_w);
  }
}

TEST_CASE("ImageFolder: classes by sorted folder name, sorted files, images only", "[datasets]") {
  if (!jpeg_supported() || !png_supported()) {
    WARN("SKIPPED: this build lacks libjpeg or libpng");
    return;
  }
  TempDir tmp;
  const auto a = smooth_image(8, 8, 3, 1), b = smooth_image(8, 8, 3, 2), c = smooth_image(6, 10, 3, 3);
  write_bytes(tmp / "root/zebra/2.png", encode_png(a.view()));
  write_bytes(tmp / "root/zebra/1.JPEG", encode_jpeg(b.view()));
  write_bytes(tmp / "root/apple/x.png", encode_png(c.view()));
  write_bytes(tmp / "root/apple/notes.txt", {'h', 'i'});
  ImageFolder f(tmp / "root");
  REQUIRE(f.size() == 3);
  CHECK(f.num_classes() == 2);
  CHECK(f.class_names() == std::vector<std::string>{"apple", "zebra"});
  CHECK(f.label(0) == 0);
  CHECK(f.label(1) == 1);
  CHECK(f.label(2) == 1);
  CHECK(f.item_name(0) == tmp / "root/apple/x.png");
  CHECK(f.item_name(1) == tmp / "root/zebra/1.JPEG");
  CHECK(pixels_of(f, 0) == c.pixels);
  CHECK(pixels_of(f, 2) == a.pixels);

  write_bytes(tmp / "flat/b.png", encode_png(a.view()));  // images directly under the root: unlabeled
  write_bytes(tmp / "flat/a.png", encode_png(c.view()));
  ImageFolder u(tmp / "flat");
  CHECK(u.size() == 2);
  CHECK(u.num_classes() == 0);
  CHECK(!u.has_labels());
  CHECK(u.label(1) == -1);
  CHECK(pixels_of(u, 0) == c.pixels);
}

TEST_CASE("ImageFolder reads image folders inside .tar and .tar.gz archives", "[datasets]") {
  if (!png_supported()) {
    WARN("SKIPPED: this build lacks libpng");
    return;
  }
  TempDir tmp;
  const auto a = smooth_image(5, 7, 3, 4), b = smooth_image(9, 3, 3, 5);
  std::vector<uint8_t> tar;
  tar_add(tar, "set/train/", {}, '5');
  tar_add(tar, "set/train/dog/", {}, '5');
  tar_add(tar, "set/train/dog/b.png", encode_png(b.view()));
  tar_add(tar, "set/train/cat/a.png", encode_png(a.view()));
  tar_add(tar, "set/test/cat/a.png", encode_png(b.view()));
  tar.resize(tar.size() + 1024, 0);
  write_bytes(tmp / "d.tar", tar);
  write_gz(tmp / "d.tar.gz", tar);
  for (const std::string& archive : {tmp / "d.tar", tmp / "d.tar.gz"}) {
    ImageFolder f(archive, "set/train");
    REQUIRE(f.size() == 2);
    CHECK(f.class_names() == std::vector<std::string>{"cat", "dog"});
    CHECK(f.label(0) == 0);
    CHECK(f.label(1) == 1);
    CHECK(pixels_of(f, 0) == a.pixels);
    CHECK(pixels_of(f, 1) == b.pixels);
    CHECK(f.item_name(1) == archive + ":set/train/dog/b.png");
  }
  CHECK(ImageFolder(tmp / "d.tar", "set/test").size() == 1);
  CHECK(open_dataset("tar:" + tmp / "d.tar.gz" + ":set/train")->size() == 2);
}

TEST_CASE("ImageFolder refuses tar members outside the archive's root, naming them", "[datasets]") {
  // Issue 14, finding 7: '../../x.jpg' silently became a class named '..'; an absolute member was dropped.
  if (!png_supported()) {
    WARN("SKIPPED: this build lacks libpng");
    return;
  }
  TempDir tmp;
  const auto a = smooth_image(5, 7, 3, 4);
  auto archive_with = [&](const std::string& member) {
    std::vector<uint8_t> tar;
    tar_add(tar, "cat/a.png", encode_png(a.view()));
    tar_add(tar, member, encode_png(a.view()));
    tar.resize(tar.size() + 1024, 0);
    const std::string path = tmp / "m.tar";
    write_bytes(path, tar);
    return path;
  };
  for (const char* bad : {"../../x.png", "dog/../../x.png", "dog/..", "/etc/x.png"}) {
    INFO(bad);
    const std::string path = archive_with(bad);
    CHECK_THROWS_WITH(ImageFolder(path), Catch::Matchers::Contains(path) &&
                                             Catch::Matchers::Contains("'" + std::string(bad) + "'"));
  }
  // '..' inside a name is not a parent-directory component.
  const ImageFolder ok(archive_with("dog..s/x..png"));
  CHECK(ok.class_names() == std::vector<std::string>{"cat", "dog..s"});
}

TEST_CASE("CIFAR-10 and CIFAR-100 binaries: CHW planes become HWC, labels read", "[datasets]") {
  TempDir tmp;
  auto value = [](int i, int c, int p) { return uint8_t((i * 7 + c * 50 + p * 3) % 256); };
  for (int label_bytes : {1, 2}) {
    std::vector<uint8_t> file;
    for (int i = 0; i < 3; ++i) {
      if (label_bytes == 2) file.push_back(uint8_t(i + 10));  // coarse label, ignored
      file.push_back(uint8_t(label_bytes == 1 ? i * 3 : 90 + i));
      for (int c = 0; c < 3; ++c)
        for (int p = 0; p < 1024; ++p) file.push_back(value(i, c, p));
    }
    const std::string dir = tmp / (label_bytes == 1 ? "c10" : "c100");
    write_bytes(dir + (label_bytes == 1 ? "/test_batch.bin" : "/test.bin"), file);
    auto d = label_bytes == 1 ? load_cifar10(dir, Split::test) : load_cifar100(dir, Split::test);
    REQUIRE(d->size() == 3);
    CHECK(d->num_classes() == (label_bytes == 1 ? 10 : 100));
    for (int i = 0; i < 3; ++i) {
      CHECK(d->label(i) == (label_bytes == 1 ? i * 3 : 90 + i));
      const std::vector<uint8_t> px = pixels_of(*d, i);
      REQUIRE(px.size() == 3072);
      for (int y : {0, 5, 31})
        for (int x : {0, 17, 31})
          for (int c = 0; c < 3; ++c) CHECK(px[(y * 32 + x) * 3 + c] == value(i, c, y * 32 + x));
    }
  }
  CHECK(open_dataset("cifar10:" + tmp / "c10" + ":test")->size() == 3);
}

TEST_CASE("STL-10 binary: column-major planes become HWC, labels 1..10 become 0..9", "[datasets]") {
  TempDir tmp;
  auto value = [](int i, int c, int x, int y) { return uint8_t((i * 31 + c * 70 + x * 5 + y * 2) % 256); };
  std::vector<uint8_t> xs;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c)
      for (int x = 0; x < 96; ++x)
        for (int y = 0; y < 96; ++y) xs.push_back(value(i, c, x, y));
  write_bytes(tmp / "stl/train_X.bin", xs);
  write_bytes(tmp / "stl/train_y.bin", {10, 3});
  write_bytes(tmp / "stl/unlabeled_X.bin", xs);
  auto d = load_stl10(tmp / "stl", Split::train);
  REQUIRE(d->size() == 2);
  CHECK(d->num_classes() == 10);
  CHECK(d->label(0) == 9);
  CHECK(d->label(1) == 2);
  const std::vector<uint8_t> px = pixels_of(*d, 1);
  for (int y : {0, 40, 95})
    for (int x : {0, 7, 95})
      for (int c = 0; c < 3; ++c) CHECK(px[(y * 96 + x) * 3 + c] == value(1, c, x, y));
  auto u = open_dataset("stl10:" + tmp / "stl" + ":unlabeled");
  CHECK(u->size() == 2);
  CHECK(!u->has_labels());
  CHECK(pixels_of(*u, 1) == px);
}

TEST_CASE("IDX images and labels, plain and gzip", "[datasets]") {
  TempDir tmp;
  std::vector<uint8_t> images = be32(0x00000803), labels = be32(0x00000801);
  for (uint32_t v : {3u, 4u, 5u}) {
    const auto b = be32(v);
    images.insert(images.end(), b.begin(), b.end());
  }
  const auto n = be32(3);
  labels.insert(labels.end(), n.begin(), n.end());
  for (int i = 0; i < 3 * 4 * 5; ++i) images.push_back(uint8_t(i * 4));
  for (uint8_t l : {7, 0, 9}) labels.push_back(l);
  write_bytes(tmp / "img", images);
  write_gz(tmp / "lbl.gz", labels);
  auto d = load_idx(tmp / "img", tmp / "lbl.gz");
  REQUIRE(d->size() == 3);
  CHECK(d->num_classes() == 10);
  CHECK(d->label(0) == 7);
  CHECK(d->label(2) == 9);
  std::vector<uint8_t> scratch;
  const ImageView v = d->image(2, scratch);
  CHECK((v.height == 4 && v.width == 5 && v.channels == 1));
  for (int p = 0; p < 20; ++p) CHECK(v.data[p] == uint8_t((40 + p) * 4));
  CHECK(!load_idx(tmp / "img", "")->has_labels());
}

TEST_CASE("Fashion-MNIST from Debian's dataset-fashion-mnist", "[datasets]") {
  std::error_code ec;
  if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz", ec)) {
    WARN("SKIPPED: " << kFashionMnistDir << " not found (apt-get install dataset-fashion-mnist)");
    return;
  }
  auto d = load_fashion_mnist(kFashionMnistDir, Split::test);
  REQUIRE(d->size() == 10000);
  CHECK(d->num_classes() == 10);
  std::vector<int> counts(10);
  for (int64_t i = 0; i < d->size(); ++i) counts[d->label(i)]++;
  for (int c : counts) CHECK(c == 1000);
  std::vector<uint8_t> scratch;
  const ImageView v = d->image(0, scratch);
  CHECK((v.height == 28 && v.width == 28 && v.channels == 1));
}

TEST_CASE("synthetic dataset: deterministic by seed, labels i % classes, classes differ", "[datasets]") {
  SyntheticDataset a(40, 10, 32, 3), b(40, 10, 32, 3), c(40, 10, 32, 4);
  CHECK(a.size() == 40);
  CHECK(a.label(23) == 3);
  CHECK(pixels_of(a, 5) == pixels_of(b, 5));
  CHECK(pixels_of(a, 5) != pixels_of(c, 5));
  CHECK(pixels_of(a, 5) != pixels_of(a, 6));
  CHECK(pixels_of(a, 5).size() == 32 * 32 * 3);
}

TEST_CASE("split_indices and Subset: a seeded, disjoint, complete split", "[datasets]") {
  const SplitIndices s = split_indices(1000, 0.1, 42);
  CHECK(s.val.size() == 100);
  CHECK(s.train.size() == 900);
  std::set<int64_t> all(s.train.begin(), s.train.end());
  for (int64_t v : s.val) CHECK(all.insert(v).second);
  CHECK(all.size() == 1000);
  CHECK(split_indices(1000, 0.1, 42).val == s.val);
  CHECK(split_indices(1000, 0.1, 43).val != s.val);
  auto base = std::make_shared<SyntheticDataset>(1000, 7, 8);
  Subset sub(base, s.val);
  CHECK(sub.size() == 100);
  CHECK(sub.label(3) == s.val[3] % 7);
  CHECK(pixels_of(sub, 3) == pixels_of(*base, s.val[3]));
}

TEST_CASE("packed format: written in shards, memory-mapped back, labeled and unlabeled", "[datasets]") {
  TempDir tmp;
  std::vector<byol::data::testing::TestImage> images;
  for (int i = 0; i < 7; ++i) images.push_back(smooth_image(5 + i, 9 - i, i % 2 ? 1 : 3, i));
  {
    PackWriter w(tmp / "p", {"a", "b", "c"}, 200);  // small shards: several files
    for (int i = 0; i < 7; ++i) w.add(images[i].view(), i % 3);
    w.finish();
  }
  CHECK(std::filesystem::exists(tmp / "p-00002.bin"));
  auto d = open_dataset("packed:" + tmp / "p");
  REQUIRE(d->size() == 7);
  CHECK(d->class_names() == std::vector<std::string>{"a", "b", "c"});
  for (int i = 0; i < 7; ++i) {
    std::vector<uint8_t> scratch;
    const ImageView v = d->image(i, scratch);
    CHECK((v.height == 5 + i && v.width == 9 - i && v.channels == (i % 2 ? 1 : 3)));
    CHECK(std::vector<uint8_t>(v.data, v.data + v.bytes()) == images[i].pixels);
    CHECK(d->label(i) == i % 3);
  }
  {
    PackWriter w(tmp / "u", {});
    w.add(images[0].view(), -1);
    CHECK_THROWS_WITH(w.add(images[0].view(), 0), Catch::Contains("unlabeled"));
    w.finish();
  }
  PackedDataset u(tmp / "u");
  CHECK(u.size() == 1);
  CHECK(!u.has_labels());
  {
    PackWriter w(tmp / "abandoned", {});
    w.add(images[0].view(), -1);
  }  // never finished: no index, no shards left behind
  CHECK(!std::filesystem::exists(tmp / "abandoned.index"));
  CHECK(!std::filesystem::exists(tmp / "abandoned-00000.bin.tmp"));
}

TEST_CASE("dataset specs", "[datasets]") {
  auto s = open_dataset("synthetic:50:5:16:9");
  CHECK(s->size() == 50);
  CHECK(s->num_classes() == 5);
  CHECK_THROWS_WITH(open_dataset("imagenet:/x"), Catch::Contains("unknown dataset kind 'imagenet'"));
  CHECK_THROWS_WITH(open_dataset("synthetic:ten:5:16"), Catch::Contains("expected an integer for count"));
  CHECK_THROWS_WITH(open_dataset("cifar10:/x:val"), Catch::Contains("train, test or unlabeled"));
}

TEST_CASE("a test set that repeats its training set is named (same spec, synthetic sets with one seed)",
          "[datasets]") {
  using Catch::Contains;
  // Synthetic image i depends on the seed, the classes and the side only: the same seed makes the test
  // images training images (the first min(count) of them), so a random network's kNN is about 100 %.
  const auto a = open_dataset("synthetic:40:4:16"), b = open_dataset("synthetic:20:4:16:0");
  std::vector<uint8_t> sa, sb;
  const ImageView ia = a->image(7, sa), ib = b->image(7, sb);
  REQUIRE(ia.bytes() == ib.bytes());
  CHECK(std::equal(ia.data, ia.data + ia.bytes(), ib.data));
  CHECK_THAT(test_overlap_warning("synthetic:40:4:16", "synthetic:20:4:16:0"),
             Contains("share seed 0") && Contains("synthetic:20:4:16:<seed>"));
  CHECK_THAT(test_overlap_warning("folder:/data/x", "folder:/data/x"), Contains("is the training set"));
  CHECK(test_overlap_warning("synthetic:40:4:16:1", "synthetic:20:4:16:2").empty());
  CHECK(test_overlap_warning("synthetic:40:4:16", "synthetic:20:4:32").empty());  // other side: other images
  CHECK(test_overlap_warning("cifar10:/d:train", "cifar10:/d:test").empty());
}
