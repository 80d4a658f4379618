// Front ends of softmax_cross_entropy and count_top1_correct (the classification loss and its metric).
#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/ops.h"
#include "engine/ops/check.h"

namespace byol::ops {
using namespace detail;

namespace {
// logits [N, K] floating and contiguous, labels [N] of i32 or i64, contiguous.
void check_logits_and_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  check_rank(op, "logits", logits, 2, "[N, K]");
  check_floating(op, "logits", logits);
  check_contiguous(op, "logits", logits);
  check_rank(op, "labels", labels, 1, "[N]");
  BYOL_CHECK(labels.dtype() == DType::i32 || labels.dtype() == DType::i64, op,
             ": argument 'labels' expected dtype i32 or i64, got ", labels.describe());
  check_contiguous(op, "labels", labels);
  BYOL_CHECK(labels.size(0) == logits.size(0), op,
             ": argument 'labels' expected [N] with N = ", logits.size(0), " (the rows of 'logits'), got ",
             labels.describe());
}

// f(labels as const int32_t* or const int64_t*): the label dtypes the ops take (checked before).
template <class F>
void with_labels(const Tensor& labels, F&& f) {
  if (labels.dtype() == DType::i32) {
    f(labels.data<int32_t>());
  } else {
    f(labels.data<int64_t>());
  }
}
}  // namespace

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  const char* op = "softmax_cross_entropy";
  check_logits_and_labels(op, logits, labels);
  const int64_t N = logits.size(0), K = logits.size(1);
  BYOL_CHECK(N > 0 && K > 0, op, ": expected a non-empty batch and at least one class, got ",
             logits.describe());
  BYOL_CHECK(labels.device() == logits.device(), op, ": argument 'labels' expected device ",
             device_name(logits.device()), ", got ", labels.describe());
  // On the CPU the labels are checked here; a GPU's are not read back (that would make the BYOL step's
  // probe wait for the GPU): there a label outside [0, K) makes the loss NaN.
  if (logits.device().is_cpu()) {
    with_labels(labels, [&](const auto* lab) {
      for (int64_t i = 0; i < N; ++i)
        BYOL_CHECK(lab[i] >= 0 && lab[i] < K, op, ": argument 'labels' expected values in [0, ", K, "), got ",
                   static_cast<int64_t>(lab[i]), " at index ", i);
    });
  }
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  Tensor probs = Tensor::empty({N, K}, logits.dtype(), logits.device());
  with_labels(labels, [&](const auto* lab) {
    on_backend(
        op, logits,
        [&](auto tag) {
          using T = decltype(tag);
          cpu::softmax_cross_entropy_forward(logits.data<T>(), lab, probs.data<T>(), loss.data<T>(), N, K);
        },
        [&] {
          BYOL_ON_CUDA(op, logits,
                       cuda::softmax_cross_entropy_forward(logits.data<float>(), lab, probs.data<float>(),
                                                           loss.data<float>(), N, K));
        });
  });
  GradRecorder rec(op, {logits, labels});
  if (rec.active()) {
    rec.record(loss, [op, probs, labels, N, K](const Tensor& g_in) {
      const Tensor g = g_in.contiguous();
      Tensor dlogits = Tensor::empty({N, K}, probs.dtype(), probs.device());
      with_labels(labels, [&](const auto* lab) {
        on_backend(
            op, probs,
            [&](auto tag) {
              using T = decltype(tag);
              cpu::softmax_cross_entropy_backward(probs.data<T>(), lab, g.data<T>(), dlogits.data<T>(), N, K);
            },
            [&] {
              BYOL_ON_CUDA(op, probs,
                           cuda::softmax_cross_entropy_backward(probs.data<float>(), lab, g.data<float>(),
                                                                dlogits.data<float>(), N, K));
            });
      });
      return std::vector<Tensor>{dlogits, Tensor()};
    });
  }
  return loss;
}

Tensor count_top1_correct(const Tensor& logits, const Tensor& labels) {
  const char* op = "count_top1_correct";
  check_logits_and_labels(op, logits, labels);
  const int64_t N = logits.size(0), K = logits.size(1);
  BYOL_CHECK(K > 0, op, ": argument 'logits' expected at least one class, got ", logits.describe());
  BYOL_CHECK(N < (int64_t(1) << 24), op, ": ", N,
             " rows: the count is kept as a float, exact below 2^24 rows");
  BYOL_CHECK(labels.device() == logits.device(), op, ": argument 'labels' expected device ",
             device_name(logits.device()), ", got ", labels.describe());
  Tensor count = Tensor::empty({}, logits.dtype(), logits.device());
  with_labels(labels, [&](const auto* lab) {
    on_backend(
        op, logits,
        [&](auto tag) {
          using T = decltype(tag);
          cpu::count_top1_correct(logits.data<T>(), lab, N, K, count.data<T>());
        },
        [&] {
          BYOL_ON_CUDA(op, logits,
                       cuda::count_top1_correct(logits.data<float>(), lab, N, K, count.data<float>()));
        });
  });
  return count;
}

}  // namespace byol::ops
