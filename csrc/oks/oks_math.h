// Object keypoint similarity (OKS) terms and their gradients, shared by the CPU
// loops and the CUDA kernels.
//
// Semantics are pycocotools COCOeval.computeOks: for a ground-truth keypoint with
// falloff sigma, a person of area s (pixels^2) and a prediction at squared pixel
// distance d^2,
//   e = d^2 / ((2 sigma)^2 * (s + eps) * 2),   eps = np.spacing(1) = 2^-52,
// and OKS is the mean of exp(-e) over the person's labelled keypoints (v > 0).
// A person with no labelled keypoint has OKS 0 here (pycocotools switches to a
// box-distance formula for those; see posetr/ops/oks.py).
#pragma once

#include <bit>
#include <cmath>
#include <type_traits>

#include "common/host_device.h"

namespace posetr {

// pycocotools' eps, np.spacing(1).
constexpr double kOksAreaEps = 2.220446049250313e-16;

// The factor c with e = c * d^2 for one keypoint: 1 / ((2 sigma)^2 * (area + eps) * 2).
template <typename acc_t>
POSETR_HD acc_t oks_scale(acc_t sigma, acc_t area) {
  const acc_t two_sigma = acc_t(2) * sigma;
  return acc_t(1) / (two_sigma * two_sigma * (area + static_cast<acc_t>(kOksAreaEps)) * acc_t(2));
}

// exp(-e) for e >= 0 (NaN propagates). Float32 host code uses a polynomial the
// compiler vectorises (libm's expf is a scalar call): Cody-Waite reduction to
// |r| <= ln2/2 and a degree-7 Taylor tail, within 2 ulp of expf; 0 for e > 87,
// where expf is below the smallest normal float. Everything else uses std::exp.
inline float exp_neg_poly(float e) {
  const float x = e < 87.0f ? -e : -87.0f;
  // n = round(x / ln2): adding and subtracting 1.5 * 2^23 rounds to nearest.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  // r = x - n * ln2, with ln2 split in two so that n * 0.693359375 is exact.
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n through the exponent bits (n in [-126, 0]).
  const float pow2 = std::bit_cast<float>((static_cast<int>(n) + 127) << 23);
  return e >= 87.0f ? 0.0f : (e < 87.0f ? p * pow2 : e);
}

template <typename acc_t>
POSETR_HD acc_t oks_exp_neg(acc_t e) {
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<acc_t, float>) return exp_neg_poly(e);
#endif
  return std::exp(-e);
}

// One keypoint's term exp(-c * d^2) for the prediction (px, py) and ground truth (gx, gy).
template <typename acc_t>
POSETR_HD acc_t oks_term(acc_t px, acc_t py, acc_t gx, acc_t gy, acc_t scale) {
  const acc_t dx = px - gx, dy = py - gy;
  return oks_exp_neg(scale * (dx * dx + dy * dy));
}

// OKS from the sum of a person's terms and its number of labelled keypoints (0 -> OKS 0).
template <typename acc_t>
POSETR_HD acc_t oks_mean(acc_t term_sum, int count) {
  return count > 0 ? term_sum / static_cast<acc_t>(count) : acc_t(0);
}

// Per-pair transforms of the OKS computed by the fused `oks` op: the OKS itself,
// PETR's loss -log(max(OKS, eps)) and ED-Pose's loss 1 - OKS.
enum class OksTransform : int { kIdentity = 0, kNegLog = 1, kOneMinus = 2 };

template <typename acc_t>
POSETR_HD acc_t oks_transform(acc_t oks, OksTransform transform, acc_t eps) {
  switch (transform) {
    case OksTransform::kNegLog:
      return -std::log(oks > eps ? oks : eps);
    case OksTransform::kOneMinus:
      return acc_t(1) - oks;
    default:
      return oks;
  }
}

// d transform / d OKS. The clamp passes the gradient where OKS >= eps, as torch.clamp does.
template <typename acc_t>
POSETR_HD acc_t oks_transform_grad(acc_t oks, OksTransform transform, acc_t eps) {
  switch (transform) {
    case OksTransform::kNegLog:
      return oks >= eps ? -acc_t(1) / oks : acc_t(0);
    case OksTransform::kOneMinus:
      return acc_t(-1);
    default:
      return acc_t(1);
  }
}

// Adds the gradient of one keypoint's term exp(-c d^2) with respect to the
// prediction, times `weight`: d/dpx = -2 c dx exp(-c d^2).
template <typename acc_t>
POSETR_HD void oks_term_grad(acc_t px, acc_t py, acc_t gx, acc_t gy, acc_t scale, acc_t weight, acc_t& grad_x,
                             acc_t& grad_y) {
  const acc_t dx = px - gx, dy = py - gy;
  const acc_t g = acc_t(-2) * scale * oks_exp_neg(scale * (dx * dx + dy * dy)) * weight;
  grad_x = g * dx;
  grad_y = g * dy;
}

}  // namespace posetr
