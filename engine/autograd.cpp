#include "engine/autograd.h"

#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace byol {

namespace {
thread_local bool g_grad_enabled = true;
thread_local LeafReadyHook g_leaf_ready;
std::atomic<uint64_t> g_next_seq{1};
}  // namespace

bool grad_enabled() {
  return g_grad_enabled;
}

LeafReadyHook set_leaf_ready_hook(LeafReadyHook hook) {
  std::swap(hook, g_leaf_ready);
  return hook;
}
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = previous_;
}

GradRecorder::GradRecorder(const char* op, std::initializer_list<Tensor> inputs)
    : GradRecorder(op, std::vector<Tensor>(inputs)) {}

GradRecorder::GradRecorder(const char* op, const std::vector<Tensor>& inputs) : op_(op) {
  if (!g_grad_enabled) return;
  edges_.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.requires_grad()) continue;
    active_ = true;
    if (t.grad_fn()) {
      edges_[i].node = t.grad_fn();
    } else {
      edges_[i].leaf = t.impl_ptr();
    }
  }
}

void GradRecorder::record(Tensor& out, BackwardFn fn) {
  BYOL_CHECK(active_, op_, ": record() called although no input requires a gradient");
  auto node = std::make_shared<Node>();
  node->op = op_;
  node->seq = g_next_seq.fetch_add(1);
  node->inputs = std::move(edges_);
  node->backward = std::move(fn);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

namespace {

void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = ops::add(slot, g);
  }
}

void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  Tensor leaf_t(std::shared_ptr<TensorImpl>(std::shared_ptr<TensorImpl>(), &leaf));
  BYOL_CHECK(g.shape() == leaf.shape, "backward: gradient ", g.describe(),
             " does not match the shape of leaf ", leaf_t.describe());
  if (leaf.grad) {
    Tensor dst(leaf.grad);
    ops::add_(dst, g);
  } else {
    leaf.grad = g.clone().impl_ptr();  // own copy: g may be shared with other inputs' gradients
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& seed_in) {
  BYOL_CHECK(root.requires_grad(), "backward: ", root.describe(),
             " does not require a gradient (no input of the ops that made it requires one, or it "
             "was computed under NoGradGuard)");
  Tensor seed = seed_in;
  if (!seed.defined()) {
    BYOL_CHECK(root.numel() == 1, "backward: ", root.describe(),
               " has more than one element; pass the gradient of the output explicitly");
    seed = Tensor::full(root.shape(), 1.0, root.dtype(), root.device());
  }
  BYOL_CHECK(seed.shape() == root.shape() && seed.dtype() == root.dtype() && seed.device() == root.device(),
             "backward: seed gradient ", seed.describe(), " does not match ", root.describe());

  if (root.is_leaf()) {
    accumulate_leaf(*root.impl(), seed);
    if (g_leaf_ready) g_leaf_ready(*root.impl());
    return;
  }

  // Collect the tape reachable from the root.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{root.grad_fn().get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    order.push_back(n);
    for (const Edge& e : n->inputs)
      if (e.node) stack.push_back(e.node.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->seq > b->seq; });

  // Keep every node alive while we free edges during the walk.
  std::vector<std::shared_ptr<Node>> keep;
  keep.reserve(order.size());
  keep.push_back(root.grad_fn());
  for (Node* n : order)
    for (const Edge& e : n->inputs)
      if (e.node) keep.push_back(e.node);

  // How many edges of this tape lead to each leaf: a leaf is ready once all of them have been walked.
  std::unordered_map<TensorImpl*, int> leaf_edges;
  if (g_leaf_ready)
    for (Node* n : order)
      for (const Edge& e : n->inputs)
        if (e.leaf) ++leaf_edges[e.leaf.get()];
  auto leaf_edge_done = [&](TensorImpl& leaf) {
    if (g_leaf_ready && --leaf_edges[&leaf] == 0) g_leaf_ready(leaf);
  };

  root.grad_fn()->pending = seed;
  for (Node* n : order) {
    BYOL_CHECK(n->backward, "backward: the graph through '", n->op,
               "' was already freed by an earlier backward()");
    if (n->pending.defined()) {
      Tensor g = std::move(n->pending);
      n->pending = Tensor();
      std::vector<Tensor> grads = n->backward(g);
      BYOL_CHECK(grads.size() == n->inputs.size(), "backward of '", n->op, "' returned ", grads.size(),
                 " gradients for ", n->inputs.size(), " inputs");
      for (size_t i = 0; i < grads.size(); ++i) {
        const Edge& e = n->inputs[i];
        if (!e.active() || !grads[i].defined()) continue;
        if (e.node) {
          accumulate(e.node->pending, grads[i]);
        } else {
          accumulate_leaf(*e.leaf, grads[i]);
        }
      }
    }
    for (const Edge& e : n->inputs)
      if (e.leaf) leaf_edge_done(*e.leaf);
    // Free this part of the tape: saved tensors go with the closure, edges with the vector.
    n->backward = nullptr;
    n->inputs.clear();
  }
}

}  // namespace byol
