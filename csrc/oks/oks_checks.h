// Host-side argument checks for the OKS ops, shared by the CPU and CUDA entry
// points. Shapes, ranks and dtypes raise ValueError naming the argument; so do
// negative areas and non-positive sigmas (a value check, which on CUDA costs one
// device-to-host copy per call).
#pragma once

#include <ATen/ATen.h>

#include <string_view>
#include <utility>

#include "common/checks.h"
#include "oks/oks_math.h"

namespace posetr {

// Sizes of a pairwise_oks call; batched = the inputs carry a leading batch dim B.
struct PairwiseOksSizes {
  int64_t B, N, M, K;
  bool batched;
};

inline void check_oks_value_ranges(const at::Tensor& area, const at::Tensor& sigmas) {
  bool area_ok = true, sigmas_ok = true;
  if (area.is_cpu()) {
    // Callers pass contiguous accumulation-type (float/double) tensors.
    AT_DISPATCH_FLOATING_TYPES(area.scalar_type(), "check_oks_value_ranges", [&] {
      const scalar_t* a = area.data_ptr<scalar_t>();
      for (int64_t i = 0; i < area.numel(); ++i) area_ok = area_ok && a[i] >= 0;  // false for NaN too
      const scalar_t* s = sigmas.data_ptr<scalar_t>();
      for (int64_t i = 0; i < sigmas.numel(); ++i) sigmas_ok = sigmas_ok && s[i] > 0;
    });
  } else {
    const auto bad = at::stack({area.lt(0).logical_or(area.isnan()).any(), sigmas.le(0).logical_or(sigmas.isnan()).any()})
                         .cpu();
    area_ok = !bad[0].item<bool>();
    sigmas_ok = !bad[1].item<bool>();
  }
  TORCH_CHECK_VALUE(area_ok, "area must be non-negative (pixels^2) and not NaN");
  TORCH_CHECK_VALUE(sigmas_ok, "sigmas must be positive and not NaN");
}

// Checks the dtypes and devices shared by both ops: pred and gt one floating dtype,
// visible bool, area and sigmas floating, all on pred's device; sigmas [K].
inline void check_oks_dtypes(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                             const at::Tensor& area, const at::Tensor& sigmas, int64_t K) {
  check_floating(pred, "pred");
  TORCH_CHECK_VALUE(gt.scalar_type() == pred.scalar_type(), "gt must have the dtype of pred (", pred.scalar_type(),
                    "), got ", gt.scalar_type());
  check_dtype(visible, "visible", at::kBool, "True where the ground-truth keypoint is labelled, v > 0");
  check_floating(area, "area");
  check_floating(sigmas, "sigmas");
  check_dim(sigmas, "sigmas", 1, "[K]");
  check_size(sigmas, "sigmas", 0, K, "one sigma per keypoint K of pred");
  check_same_device(gt, "gt", pred, "pred");
  check_same_device(visible, "visible", pred, "pred");
  check_same_device(area, "area", pred, "pred");
  check_same_device(sigmas, "sigmas", pred, "pred");
}

// pred [N, K, 2] or [B, N, K, 2]; gt [M, K, 2] or [B, M, K, 2]; visible [(B,) M, K]; area [(B,) M].
inline PairwiseOksSizes check_pairwise_oks(const at::Tensor& pred, const at::Tensor& gt, const at::Tensor& visible,
                                           const at::Tensor& area, const at::Tensor& sigmas) {
  TORCH_CHECK_VALUE(pred.dim() == 3 || pred.dim() == 4,
                    "pred must be a 3-D tensor [N, K, 2] or a 4-D tensor [B, N, K, 2], got shape ", pred.sizes());
  const bool batched = pred.dim() == 4;
  const int64_t o = batched ? 1 : 0;
  PairwiseOksSizes s{batched ? pred.size(0) : 1, pred.size(o), 0, pred.size(o + 1), batched};
  check_size(pred, "pred", o + 2, 2, "pixel (x, y)");
  check_dim(gt, "gt", o + 3, batched ? "[B, M, K, 2] (pred is batched)" : "[M, K, 2]");
  if (batched) check_size(gt, "gt", 0, s.B, "batch size B of pred");
  s.M = gt.size(o);
  check_size(gt, "gt", o + 1, s.K, "number of keypoints K of pred");
  check_size(gt, "gt", o + 2, 2, "pixel (x, y)");
  check_dim(visible, "visible", o + 2, batched ? "[B, M, K]" : "[M, K]");
  TORCH_CHECK_VALUE(visible.sizes() == gt.sizes().slice(0, o + 2), "visible must have shape ",
                    gt.sizes().slice(0, o + 2), " (gt without its last dim), got ", visible.sizes());
  check_dim(area, "area", o + 1, batched ? "[B, M]" : "[M]");
  TORCH_CHECK_VALUE(area.sizes() == gt.sizes().slice(0, o + 1), "area must have shape ", gt.sizes().slice(0, o + 1),
                    " (one area per ground-truth person), got ", area.sizes());
  check_oks_dtypes(pred, gt, visible, area, sigmas, s.K);
  return s;
}

// Matched pairs: pred [P, K, 2], gt [P, K, 2], visible [P, K], area [P]. Returns {P, K}.
inline std::pair<int64_t, int64_t> check_matched_oks(const at::Tensor& pred, const at::Tensor& gt,
                                                     const at::Tensor& visible, const at::Tensor& area,
                                                     const at::Tensor& sigmas) {
  check_dim(pred, "pred", 3, "[P, K, 2]");
  check_size(pred, "pred", 2, 2, "pixel (x, y)");
  const int64_t P = pred.size(0), K = pred.size(1);
  TORCH_CHECK_VALUE(gt.sizes() == pred.sizes(), "gt must have the shape of pred [P, K, 2] = ", pred.sizes(), ", got ",
                    gt.sizes());
  TORCH_CHECK_VALUE(visible.sizes() == pred.sizes().slice(0, 2), "visible must have shape [P, K] = ",
                    pred.sizes().slice(0, 2), ", got ", visible.sizes());
  TORCH_CHECK_VALUE(area.dim() == 1 && area.size(0) == P, "area must have shape [P] = [", P, "], got ", area.sizes());
  check_oks_dtypes(pred, gt, visible, area, sigmas, K);
  return {P, K};
}

// The copies of area and sigmas the kernels read, in the accumulation type of pred
// (float64 for float64, else float32: a float16 area would overflow at 65504 pixels^2),
// contiguous; their values are checked.
inline std::pair<at::Tensor, at::Tensor> oks_acc_area_sigmas(const at::Tensor& pred, const at::Tensor& area,
                                                             const at::Tensor& sigmas) {
  const auto acc = pred.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto a = area.to(acc).contiguous();
  auto s = sigmas.to(acc).contiguous();
  check_oks_value_ranges(a, s);
  return {a, s};
}

// The incoming gradient of _oks_backward: Tensor[P] on pred's device.
inline void check_oks_grad(const at::Tensor& grad, const at::Tensor& pred, int64_t P) {
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == P, "grad must have shape [P] = [", P, "], got ", grad.sizes());
  check_floating(grad, "grad");
  check_same_device(grad, "grad", pred, "pred");
}

// The per-pair transform of the fused `oks` op: "identity" (OKS), "log" (-log(clamp(OKS, eps)),
// eps positive) or "linear" (1 - clamp(OKS, eps), eps non-negative; 0 leaves OKS unclamped).
inline OksTransform parse_oks_transform(std::string_view transform, double eps) {
  if (transform == "identity") return OksTransform::kIdentity;
  if (transform == "linear") {
    TORCH_CHECK_VALUE(eps >= 0, "eps must be non-negative for the linear transform, got ", eps);
    return OksTransform::kOneMinus;
  }
  TORCH_CHECK_VALUE(transform == "log", "transform must be \"identity\", \"log\" or \"linear\", got \"", transform,
                    "\"");
  TORCH_CHECK_VALUE(eps > 0, "eps must be positive for the log transform, got ", eps);
  return OksTransform::kNegLog;
}

}  // namespace posetr
