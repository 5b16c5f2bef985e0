// Bilinear sampling of one level of a multi-scale feature map and its gradient,
// shared by MSDA and EMSDA, CPU and CUDA.
//
// Semantics are Deformable DETR's ms_deform_attn_im2col_bilinear (equal to
// F.grid_sample(align_corners=False, padding_mode="zeros")): a normalised location
// (x, y) in [0, 1] maps to the pixel coordinate w = x * W - 0.5, h = y * H - 0.5;
// the sample counts only if -1 < h < H and -1 < w < W, and each of its four
// corners that falls outside the map contributes zero.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace posetr {

// The four corners of one bilinear sample, in the order top-left, top-right,
// bottom-left, bottom-right. `offset[i]` is the corner's spatial index inside the
// level (row * W + col); corners outside the map have valid[i] == false.
template <typename acc_t>
struct BilinearCorners {
  int64_t offset[4];
  acc_t weight[4];
  bool valid[4];
  // Fractional parts, kept for the gradient with respect to the location.
  acc_t lh, lw;
};

// Fills `c` for the normalised location (x, y) on an H x W map. Returns false
// when the sample lies outside (-1, H) x (-1, W) and so contributes nothing.
template <typename acc_t>
POSETR_HD bool bilinear_corners(acc_t x, acc_t y, int64_t H, int64_t W, BilinearCorners<acc_t>& c) {
  const acc_t h = y * static_cast<acc_t>(H) - acc_t(0.5);
  const acc_t w = x * static_cast<acc_t>(W) - acc_t(0.5);
  // Written as negations so that NaN locations are rejected too.
  if (!(h > acc_t(-1) && w > acc_t(-1) && h < static_cast<acc_t>(H) && w < static_cast<acc_t>(W))) {
    return false;
  }
  const acc_t h_floor = h >= 0 ? static_cast<acc_t>(static_cast<int64_t>(h)) : acc_t(-1);
  const acc_t w_floor = w >= 0 ? static_cast<acc_t>(static_cast<int64_t>(w)) : acc_t(-1);
  const int64_t h_low = static_cast<int64_t>(h_floor);
  const int64_t w_low = static_cast<int64_t>(w_floor);
  const int64_t h_high = h_low + 1;
  const int64_t w_high = w_low + 1;
  c.lh = h - h_floor;
  c.lw = w - w_floor;
  const acc_t hh = acc_t(1) - c.lh;
  const acc_t hw = acc_t(1) - c.lw;
  const bool top = h_low >= 0, bottom = h_high <= H - 1, left = w_low >= 0, right = w_high <= W - 1;
  c.valid[0] = top && left;
  c.valid[1] = top && right;
  c.valid[2] = bottom && left;
  c.valid[3] = bottom && right;
  c.offset[0] = h_low * W + w_low;
  c.offset[1] = h_low * W + w_high;
  c.offset[2] = h_high * W + w_low;
  c.offset[3] = h_high * W + w_high;
  c.weight[0] = hh * hw;
  c.weight[1] = hh * c.lw;
  c.weight[2] = c.lh * hw;
  c.weight[3] = c.lh * c.lw;
  return true;
}

// Gradient of one bilinear sample with respect to its normalised location.
// `dot[i]` = sum over channels of grad_sample[d] * value_corner_i[d] (zero for an
// invalid corner). Adds d(sample . grad_sample)/dx and /dy, times `scale`.
template <typename acc_t>
POSETR_HD void bilinear_location_grad(const BilinearCorners<acc_t>& c, const acc_t dot[4], int64_t H, int64_t W,
                                      acc_t scale, acc_t& grad_x, acc_t& grad_y) {
  const acc_t hh = acc_t(1) - c.lh;
  const acc_t hw = acc_t(1) - c.lw;
  // d(weight_i)/dh and d(weight_i)/dw for the four corners.
  const acc_t d_h = -hw * dot[0] - c.lw * dot[1] + hw * dot[2] + c.lw * dot[3];
  const acc_t d_w = -hh * dot[0] + hh * dot[1] - c.lh * dot[2] + c.lh * dot[3];
  // h = y * H - 0.5 and w = x * W - 0.5.
  grad_y += scale * static_cast<acc_t>(H) * d_h;
  grad_x += scale * static_cast<acc_t>(W) * d_w;
}

// The value of one bilinear sample from the four corner values of one channel
// (invalid corners ignored). With dot[] in place of corner values it gives the
// gradient with respect to the attention weight.
template <typename acc_t>
POSETR_HD acc_t bilinear_combine(const BilinearCorners<acc_t>& c, const acc_t corner_value[4]) {
  acc_t out = 0;
  for (int i = 0; i < 4; ++i) {
    if (c.valid[i]) out += c.weight[i] * corner_value[i];
  }
  return out;
}

}  // namespace posetr
