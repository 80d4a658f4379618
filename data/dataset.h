// Datasets: indexed collections of images with optional labels.
//
// Conventions:
//  - image(i, scratch, hint) is thread safe (const, no shared mutable state) and returns a uint8 HWC view
//    (1 or 3 channels) that stays valid until `scratch` is next used or the dataset is destroyed:
//    in-memory and memory-mapped datasets return views into their own storage, decoding datasets write
//    into `scratch`.
//  - Labels are class indices in [0, num_classes()); num_classes() == 0 means unlabeled (label() is -1).
//  - Constructors validate what they can cheaply (paths, sizes, magic numbers, empty folders) and throw a
//    byol::Error naming the file and what was expected; image() throws for a corrupt image, naming it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image.h"

namespace byol::data {

struct DecodeHint {
  int min_side = 0;  // > 0: JPEG decoders may downscale (DCT) to a shorter side >= min_side
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int num_classes() const { return 0; }
  bool has_labels() const { return num_classes() > 0; }
  virtual int64_t label(int64_t index) const {
    (void)index;
    return -1;
  }
  virtual ImageView image(int64_t index, std::vector<uint8_t>& scratch,
                          const DecodeHint& hint = {}) const = 0;
  virtual std::string describe() const = 0;            // "image folder '/x' (50000 images, 10 classes)"
  virtual std::string item_name(int64_t index) const;  // file path, or "file record i"
  virtual std::vector<std::string> class_names() const { return {}; }

 protected:
  void check_index(int64_t index) const;
};

// root/<class>/*.{jpg,jpeg,png} (class index by sorted folder name), or root/*.{jpg,jpeg,png}
// (unlabeled). The root may also be a .tar or .tar.gz archive, read into memory once; `prefix` then
// selects the folder inside it (e.g. "cifar10/train"). File names are sorted, extensions matched
// case-insensitively; other files are ignored. An empty class folder is an error.
class ImageFolder : public Dataset {
 public:
  explicit ImageFolder(const std::string& root, const std::string& prefix = "");
  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  int num_classes() const override { return static_cast<int>(classes_.size()); }
  int64_t label(int64_t index) const override;
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint = {}) const override;
  std::string describe() const override;
  std::string item_name(int64_t index) const override;
  std::vector<std::string> class_names() const override { return classes_; }

 private:
  void scan(const std::string& prefix);  // lists the images and classes under root_
  struct Item {
    std::string path;  // file path, or the member name inside the archive
    int label = -1;
    size_t offset = 0, size = 0;  // archive members: bytes in archive_
  };
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<Item> items_;
  std::vector<uint8_t> archive_;  // the uncompressed tar, when the root is an archive
};

// Images already in memory as uint8 HWC, all the same size (CIFAR, STL-10, IDX and tests use this).
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(std::string name, std::vector<uint8_t> pixels, int64_t count, int height, int width,
                  int channels, std::vector<int64_t> labels, int num_classes,
                  std::vector<std::string> class_names = {});
  int64_t size() const override { return count_; }
  int num_classes() const override { return num_classes_; }
  int64_t label(int64_t index) const override;
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint = {}) const override;
  std::string describe() const override;
  std::string item_name(int64_t index) const override;
  std::vector<std::string> class_names() const override { return class_names_; }
  const std::vector<uint8_t>& pixels() const { return pixels_; }

 private:
  std::string name_;
  std::vector<uint8_t> pixels_;
  int64_t count_;
  int height_, width_, channels_;
  std::vector<int64_t> labels_;
  int num_classes_;
  std::vector<std::string> class_names_;
};

enum class Split { train, test, unlabeled };
const char* split_name(Split s);

// CIFAR-10 binary (data_batch_1..5.bin / test_batch.bin: 1 label byte + 3072 CHW bytes per image) and
// CIFAR-100 binary (train.bin / test.bin: coarse and fine label bytes + 3072; the fine label is used).
// `dir` is the folder holding those files (cifar-10-batches-bin, cifar-100-binary).
std::shared_ptr<Dataset> load_cifar10(const std::string& dir, Split split);
std::shared_ptr<Dataset> load_cifar100(const std::string& dir, Split split);
// Lower level: the given files; label_bytes 1 (CIFAR-10) or 2 (CIFAR-100); classes 10 or 100.
std::shared_ptr<Dataset> load_cifar_files(const std::vector<std::string>& files, int label_bytes,
                                          int classes);

// STL-10 binary (stl10_binary/): {train,test}_X.bin with {train,test}_y.bin (labels 1..10), and
// unlabeled_X.bin (100,000 images, memory-mapped, never copied). 96x96x3, stored column-major per channel.
std::shared_ptr<Dataset> load_stl10(const std::string& dir, Split split);

// IDX files (MNIST, Fashion-MNIST; plain or gzip): images with magic 0x00000803 ([N, rows, cols] uint8),
// labels with magic 0x00000801 ([N] uint8). labels_path may be empty (unlabeled).
std::shared_ptr<Dataset> load_idx(const std::string& images_path, const std::string& labels_path,
                                  int num_classes = 10);
// <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; dir defaults to Debian's dataset-fashion-mnist.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
std::shared_ptr<Dataset> load_fashion_mnist(const std::string& dir, Split split);

// Procedural shapes and textures in `classes` classes, generated on demand, deterministic by seed.
// The class of image i is i % classes; it fixes the shape (disc, square, triangle, ring), the texture
// (flat, stripes, checks) and a hue band; position, size, colours and noise vary per image.
class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(int64_t count, int classes, int side, uint64_t seed = 0);
  int64_t size() const override { return count_; }
  int num_classes() const override { return classes_; }
  int64_t label(int64_t index) const override;
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint = {}) const override;
  std::string describe() const override;

 private:
  int64_t count_;
  int classes_, side_;
  uint64_t seed_;
};

// A view of some items of another dataset (splits, tests).
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int num_classes() const override { return base_->num_classes(); }
  int64_t label(int64_t index) const override;
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint = {}) const override;
  std::string describe() const override;
  std::string item_name(int64_t index) const override;
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

// A seeded split of [0, n) into train and held-out parts: round(n * val_fraction) indices, chosen by a
// shuffle from `seed`, go to `val`; both lists are sorted.
struct SplitIndices {
  std::vector<int64_t> train, val;
};
SplitIndices split_indices(int64_t n, double val_fraction, uint64_t seed);

// Opens a dataset from a spec string (what the apps take on their command line):
//   folder:<dir>                 image folder (also a bare directory path)
//   tar:<file.tar[.gz]>[:<prefix>]  image folder inside an archive
//   cifar10:<dir>[:train|test]   cifar100:<dir>[:train|test]
//   stl10:<dir>[:train|test|unlabeled]
//   idx:<images>[:<labels>]      fashion-mnist[:<dir>][:train|test]
//   packed:<prefix>              byol-pack output
//   synthetic:<count>:<classes>:<side>[:<seed>]
std::shared_ptr<Dataset> open_dataset(const std::string& spec);

// A warning (empty when there is none) for an evaluation whose test set repeats its training set: the
// same spec, or synthetic sets with the same seed, classes and side, whose image i is the same image in
// both (kNN then finds each test image itself in its bank, and the accuracy says little).
std::string test_overlap_warning(const std::string& train_spec, const std::string& test_spec);

}  // namespace byol::data
