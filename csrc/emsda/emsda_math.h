// Per-sample math of EMSDA (Poseur's efficient multi-scale deformable attention),
// shared by the CPU loops and the CUDA kernels. The bilinear sample itself and its
// location gradient live in common/bilinear.h, shared with MSDA.
//
// Layout: value [N, S, C] (one map read by every head), sampling_locations
// [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P], sampled output
// [N, Lq, M, C]. Sample `idx` = ((n * Lq + q) * M + m) * L + l) * P + p.
#pragma once

#include <cstdint>

#include "common/bilinear.h"
#include "common/host_device.h"

namespace posetr {

struct EmsdaSizes {
  int64_t N, S, C, Lq, M, L, P;
};

// Corners of sample `idx` on level (H, W); false when it lies outside the map.
template <typename acc_t, typename scalar_t>
POSETR_HD bool emsda_corners(const scalar_t* locations, int64_t idx, int64_t H, int64_t W, BilinearCorners<acc_t>& c) {
  return bilinear_corners<acc_t>(static_cast<acc_t>(locations[2 * idx]), static_cast<acc_t>(locations[2 * idx + 1]), H,
                                 W, c);
}

// Writes the gradients of one sample with respect to its attention weight and its
// location, from dot[i] = sum over channels of grad_sampled[c] * value_corner_i[c]
// (zero for invalid corners) and the sample's attention weight `a`.
template <typename acc_t, typename scalar_t>
POSETR_HD void emsda_sample_grads(const BilinearCorners<acc_t>& c, const acc_t dot[4], int64_t H, int64_t W, acc_t a,
                                  int64_t idx, scalar_t* grad_locations, scalar_t* grad_weights) {
  grad_weights[idx] = static_cast<scalar_t>(bilinear_combine(c, dot));
  acc_t gx = 0, gy = 0;
  bilinear_location_grad(c, dot, H, W, a, gx, gy);
  grad_locations[2 * idx] = static_cast<scalar_t>(gx);
  grad_locations[2 * idx + 1] = static_cast<scalar_t>(gy);
}

}  // namespace posetr
