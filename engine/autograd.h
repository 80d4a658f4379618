// A minimal reverse-mode autograd.
//
// Recording: an op whose inputs include one that requires a gradient (and with grad mode on) creates a
// Node holding (a) one edge per input — to the input's own Node if it was computed, to the input
// tensor itself if it is a leaf, or nothing if it needs no gradient — and (b) a backward function that
// captures only the saved tensors it will need for the gradients that are actually required. Nodes
// carry an increasing sequence number, so the recorded graph is a tape: walking it in decreasing
// sequence order visits every node after all of its consumers.
//
// backward(): collects the nodes reachable from the root, walks them in reverse recording order,
// calls each backward function once with the sum of its incoming gradients, and frees the tape as it
// goes (saved tensors and edges are released; a second backward through the same graph is an error).
//
// Gradient conventions: a leaf's .grad accumulates with += (a parameter's .grad may be a caller-provided
// view into a flat gradient buffer); gradients flowing between nodes are fresh tensors that are summed
// when a value is used more than once.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace byol {

// Grad mode is per thread. NoGradGuard turns recording off for its scope (target network, evaluation).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

struct Edge {
  std::shared_ptr<Node> node;        // the producer of a computed input
  std::shared_ptr<TensorImpl> leaf;  // or the leaf input itself
  bool active() const { return node || leaf; }
};

// Receives the gradient of the node's output; returns one gradient per input (undefined for inputs
// whose gradient is not needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  const char* op = "";
  uint64_t seq = 0;
  std::vector<Edge> inputs;
  BackwardFn backward;  // empty once the tape has been freed
  Tensor pending;       // gradient of the output accumulated so far during backward()
};

// Used by op implementations:
//   GradRecorder rec("linear", {x, w, b});
//   ... compute out ...
//   if (rec.active()) rec.record(out, [saved = rec.needs(0) ? w : Tensor()](const Tensor& g) {...});
class GradRecorder {
 public:
  GradRecorder(const char* op, std::initializer_list<Tensor> inputs);
  GradRecorder(const char* op, const std::vector<Tensor>& inputs);
  bool active() const { return active_; }
  bool needs(size_t i) const { return active_ && edges_[i].active(); }
  // Attaches the node to `out` and marks it as requiring a gradient.
  void record(Tensor& out, BackwardFn fn);

 private:
  const char* op_;
  bool active_ = false;
  std::vector<Edge> edges_;
};

// The reverse walk behind Tensor::backward.
void run_backward(const Tensor& root, const Tensor& seed);

// Called during backward() as soon as a leaf has received every gradient contribution it will get in
// this pass (a parameter used by both views is ready after its second accumulation). Data-parallel
// training uses it to start all-reducing a bucket of gradients while backward goes on. Per thread;
// set_leaf_ready_hook returns the previous hook; an empty function removes it.
using LeafReadyHook = std::function<void(const TensorImpl& leaf)>;
LeafReadyHook set_leaf_ready_hook(LeafReadyHook hook);

}  // namespace byol
