// Index arithmetic and per-sample gradients of multi-scale deformable sampling,
// shared by MSDA and EMSDA on CPU and CUDA.
//
// Both ops sample, for every row (n, q, m), L levels x P points of a value map and
// sum them with attention weights. They differ only in where head m's values live:
// MSDA reads its own head's slice of value [N, S, M, D] (value_heads = M); EMSDA
// reads every channel of one un-projected map [N, S, C] (value_heads = 1, D = C).
// The output row (n, q, m) holds D channels: [N, Lq, M * D] == [N, Lq, M, C].
#pragma once

#include <cstdint>

#include "common/bilinear.h"
#include "common/host_device.h"

namespace posetr {

struct SamplingSizes {
  int64_t N, S, M, D, Lq, L, P;
  int64_t value_heads;  // M (a value slice per head) or 1 (one value map shared by every head)

  POSETR_HD int64_t rows() const { return N * Lq * M; }
  // Elements between the rows of two consecutive spatial positions of value.
  POSETR_HD int64_t position_stride() const { return value_heads * D; }
  // Element offset in value of position `start` of batch item n, as head m reads it.
  POSETR_HD int64_t level_offset(int64_t n, int64_t start, int64_t m) const {
    return ((n * S + start) * value_heads + (value_heads == 1 ? 0 : m)) * D;
  }
  // Index of sample (row, l, p) in attention_weights; sampling_locations holds (x, y) at 2 * index.
  POSETR_HD int64_t sample_index(int64_t row, int64_t l, int64_t p) const { return (row * L + l) * P + p; }
};

// Corners of sample `idx` on an H x W level; false when it lies outside the map.
// param_t is the dtype of the locations (the value's, or float32 for mixed precision).
template <typename acc_t, typename param_t>
POSETR_HD bool sample_corners(const param_t* locations, int64_t idx, int64_t H, int64_t W, BilinearCorners<acc_t>& c) {
  return bilinear_corners<acc_t>(static_cast<acc_t>(locations[2 * idx]), static_cast<acc_t>(locations[2 * idx + 1]), H,
                                 W, c);
}

// Writes the gradients of sample `idx` with respect to its attention weight and its
// location, from dot[i] = sum over channels of grad_output[d] * value_corner_i[d]
// (zero for invalid corners) and the sample's attention weight `a`.
template <typename acc_t, typename param_t>
POSETR_HD void write_sample_grads(const BilinearCorners<acc_t>& c, const acc_t dot[4], int64_t H, int64_t W, acc_t a,
                                  int64_t idx, param_t* grad_locations, param_t* grad_weights) {
  grad_weights[idx] = static_cast<param_t>(bilinear_combine(c, dot));
  acc_t gx = 0, gy = 0;
  bilinear_location_grad(c, dot, H, W, a, gx, gy);
  grad_locations[2 * idx] = static_cast<param_t>(gx);
  grad_locations[2 * idx + 1] = static_cast<param_t>(gy);
}

}  // namespace posetr
