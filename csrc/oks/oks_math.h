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
#include <cstdint>
#include <type_traits>

#include "common/host_device.h"

namespace posetr {

// pycocotools' eps, np.spacing(1).
constexpr double kOksAreaEps = 2.220446049250313e-16;

// e = c * d^2 with c = inv_var * inv_area: 1 / ((2 sigma)^2 * 2) per keypoint and
// 1 / (area + eps) per person, so that a kernel divides once per keypoint type and
// once per person. (pycocotools divides d^2 by each factor; results differ by a few ulp.)
template <typename acc_t>
POSETR_HD acc_t oks_inv_var(acc_t sigma) {
  const acc_t two_sigma = acc_t(2) * sigma;
  return acc_t(1) / (two_sigma * two_sigma * acc_t(2));
}

template <typename acc_t>
POSETR_HD acc_t oks_inv_area(acc_t area) {
  return acc_t(1) / (area + static_cast<acc_t>(kOksAreaEps));
}

// exp(-e) for e >= 0 (NaN propagates). Float32 host code uses a polynomial the
// compiler vectorises (libm's expf is a scalar call): Cody-Waite reduction to
// |r| <= ln2/2 and a degree-7 Taylor tail, within 2 ulp of expf; 0 for e > 87,
// where expf is below the smallest normal float. Everything else uses std::exp.
inline float exp_neg_poly(float e) {
  // The range tests are integer arithmetic on the bits of |e| (monotonic for
  // non-negative floats): GCC does not vectorise floating-point comparisons inside
  // a loop under its default -ftrapping-math.
  constexpr int32_t kMaxBits = std::bit_cast<int32_t>(87.0f);
  constexpr int32_t kInfBits = std::bit_cast<int32_t>(__builtin_inff());
  const int32_t mag = std::bit_cast<int32_t>(e) & 0x7fffffff;
  const int32_t over = (kMaxBits - mag) >> 31;  // all ones where |e| > 87 or e is NaN
  const int32_t nan = (kInfBits - mag) >> 31;   // all ones where e is NaN
  const float x = -std::bit_cast<float>(mag + ((kMaxBits - mag) & over));  // -min(|e|, 87)
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
  const float value = p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return std::bit_cast<float>((std::bit_cast<int32_t>(value) & ~over) | (mag & nan));
}

template <typename acc_t>
POSETR_HD acc_t oks_exp_neg(acc_t e) {
#if !defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<acc_t, float>) return exp_neg_poly(e);
#endif
  return std::exp(-e);
}

// Squared pixel distance between a prediction (px, py) and a ground truth (gx, gy).
template <typename acc_t>
POSETR_HD acc_t oks_sq_dist(acc_t px, acc_t py, acc_t gx, acc_t gy) {
  const acc_t dx = px - gx, dy = py - gy;
  return dx * dx + dy * dy;
}

// One keypoint's term exp(-c * d^2).
template <typename acc_t>
POSETR_HD acc_t oks_term(acc_t px, acc_t py, acc_t gx, acc_t gy, acc_t scale) {
  return oks_exp_neg(scale * oks_sq_dist(px, py, gx, gy));
}

// OKS from the sum of a person's terms and its number of labelled keypoints (0 -> OKS 0).
template <typename acc_t>
POSETR_HD acc_t oks_mean(acc_t term_sum, int count) {
  return count > 0 ? term_sum / static_cast<acc_t>(count) : acc_t(0);
}

// Per-pair transforms of the OKS computed by the fused `oks` op: the OKS itself and the
// losses of PETR (opera) and ED-Pose, which clamp the OKS first: -log(clamp(OKS, eps))
// and 1 - clamp(OKS, eps) (eps = 0: the unclamped 1 - OKS).
enum class OksTransform : int { kIdentity = 0, kNegLog = 1, kOneMinus = 2 };

// torch.clamp(oks, min=eps): NaN stays NaN.
template <typename acc_t>
POSETR_HD acc_t oks_clamp_min(acc_t oks, acc_t eps) {
  return oks < eps ? eps : oks;
}

template <typename acc_t>
POSETR_HD acc_t oks_transform(acc_t oks, OksTransform transform, acc_t eps) {
  switch (transform) {
    case OksTransform::kNegLog:
      return -std::log(oks_clamp_min(oks, eps));
    case OksTransform::kOneMinus:
      return acc_t(1) - oks_clamp_min(oks, eps);
    default:
      return oks;
  }
}

// d transform / d OKS. The clamp passes the gradient where OKS >= eps, as torch.clamp
// does (not for NaN: the chain rule then gives NaN, as autograd does through the clamp).
template <typename acc_t>
POSETR_HD acc_t oks_transform_grad(acc_t oks, OksTransform transform, acc_t eps) {
  switch (transform) {
    case OksTransform::kNegLog:
      return oks >= eps ? -acc_t(1) / oks : acc_t(0);
    case OksTransform::kOneMinus:
      return oks >= eps ? acc_t(-1) : acc_t(0);
    default:
      return acc_t(1);
  }
}

// Gradient of one keypoint's term with respect to the prediction, from the term
// t = exp(-c d^2) already computed: d t / d px = -2 c (px - gx) t (and likewise y),
// times `weight`. An unlabelled keypoint takes no part in OKS (pycocotools' e[vg > 0]):
// its gradient is 0 whatever its coordinates, NaN included.
template <typename acc_t>
POSETR_HD void oks_term_grad(bool labelled, acc_t px, acc_t py, acc_t gx, acc_t gy, acc_t scale, acc_t term,
                             acc_t weight, acc_t& grad_x, acc_t& grad_y) {
  const acc_t g = acc_t(-2) * scale * term * weight;
  grad_x = labelled ? g * (px - gx) : acc_t(0);
  grad_y = labelled ? g * (py - gy) : acc_t(0);
}

}  // namespace posetr
