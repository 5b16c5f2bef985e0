// CUDA kernels of multi-scale deformable sampling (MSDA and EMSDA); see
// common/sampling.h for the layout.
//
// One warp per (n, q, m) row; its lanes stride over the D channels, so value reads
// are coalesced and the per-sample gradients with respect to the location and the
// attention weight are warp-shuffle reductions over D (any D, not only powers of
// two). grad_value is scattered with atomics (float32 for half/bfloat16 inputs),
// the only place two rows may write the same address. param_t, the dtype of the
// locations, weights and their gradients, is scalar_t or float (common/dispatch.h).
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "common/accumulate.h"
#include "common/dispatch.h"
#include "common/sampling.h"
#include "common/warp_reduce.cuh"

namespace posetr {

constexpr int kSamplingWarpsPerBlock = 4;

// The row of this warp, or -1 past the end.
__device__ __forceinline__ int64_t sampling_warp_row(int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kSamplingWarpsPerBlock + threadIdx.x / kWarpSize;
  return row < rows ? row : -1;
}

template <typename scalar_t, typename param_t>
__global__ void sampling_forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                        const int64_t* __restrict__ starts, const param_t* __restrict__ locations,
                                        const param_t* __restrict__ weights, scalar_t* __restrict__ output,
                                        SamplingSizes s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t row = sampling_warp_row(s.rows());
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = row / (s.Lq * s.M), m = row % s.M, stride = s.position_stride();
  for (int64_t d = lane; d < s.D; d += kWarpSize) {
    acc_t acc = 0;
    for (int64_t l = 0; l < s.L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* level = value + s.level_offset(n, starts[l], m) + d;
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t idx = s.sample_index(row, l, p);
        BilinearCorners<acc_t> c;
        if (!sample_corners<acc_t>(locations, idx, H, W, c)) continue;
        acc_t corner[4];
        for (int i = 0; i < 4; ++i) corner[i] = c.valid[i] ? static_cast<acc_t>(level[c.offset[i] * stride]) : acc_t(0);
        acc += static_cast<acc_t>(weights[idx]) * bilinear_combine(c, corner);
      }
    }
    output[row * s.D + d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename param_t>
__global__ void sampling_backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                         const int64_t* __restrict__ starts, const param_t* __restrict__ locations,
                                         const param_t* __restrict__ weights, const scalar_t* __restrict__ grad_output,
                                         acc_type<scalar_t>* __restrict__ grad_value,
                                         param_t* __restrict__ grad_locations, param_t* __restrict__ grad_weights,
                                         SamplingSizes s) {
  using acc_t = acc_type<scalar_t>;
  // Whole warps exit together, so every shuffle below sees 32 active lanes.
  const int64_t row = sampling_warp_row(s.rows());
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = row / (s.Lq * s.M), m = row % s.M, stride = s.position_stride();
  const scalar_t* go = grad_output + row * s.D;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t level = s.level_offset(n, starts[l], m);
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t idx = s.sample_index(row, l, p);
      BilinearCorners<acc_t> c;
      // The same location for every lane: the branch is warp-uniform. Out-of-map
      // samples get zero gradients (the gradient buffers may be uninitialised).
      if (!sample_corners<acc_t>(locations, idx, H, W, c)) {
        if (lane == 0) {
          grad_weights[idx] = param_t(0);
          grad_locations[2 * idx] = param_t(0);
          grad_locations[2 * idx + 1] = param_t(0);
        }
        continue;
      }
      const acc_t a = weights[idx];
      acc_t dot[4] = {0, 0, 0, 0};
      for (int64_t d = lane; d < s.D; d += kWarpSize) {
        const acc_t g = go[d];
        for (int i = 0; i < 4; ++i) {
          if (!c.valid[i]) continue;
          const int64_t at = level + c.offset[i] * stride + d;
          dot[i] += g * static_cast<acc_t>(value[at]);
          accumulate(grad_value + at, a * c.weight[i] * g);
        }
      }
      for (int i = 0; i < 4; ++i) dot[i] = warp_sum(dot[i]);
      if (lane == 0) write_sample_grads(c, dot, H, W, a, idx, grad_locations, grad_weights);
    }
  }
}

inline unsigned int sampling_blocks(const SamplingSizes& s) {
  return static_cast<unsigned int>((s.rows() + kSamplingWarpsPerBlock - 1) / kSamplingWarpsPerBlock);
}

// Fills `output` (rows x D, contiguous) on the current stream. locations and
// weights share one dtype (the param dtype of ms_deform_attn_checks.h).
inline void launch_sampling_forward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                                    const at::Tensor& locations, const at::Tensor& weights, at::Tensor& output,
                                    const SamplingSizes& s) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), locations.scalar_type(), "sampling_forward_cuda", [&] {
    sampling_forward_kernel<scalar_t, param_t><<<sampling_blocks(s), kSamplingWarpsPerBlock * kWarpSize, 0, stream>>>(
        value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
        locations.data_ptr<param_t>(), weights.data_ptr<param_t>(), output.data_ptr<scalar_t>(), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// Adds into grad_value_acc (zeroed, acc_type) and writes every element of grad_locations /
// grad_weights (the dtype of locations and weights).
inline void launch_sampling_backward(const at::Tensor& value, const at::Tensor& shapes, const at::Tensor& starts,
                                     const at::Tensor& locations, const at::Tensor& weights,
                                     const at::Tensor& grad_output, at::Tensor& grad_value_acc,
                                     at::Tensor& grad_locations, at::Tensor& grad_weights, const SamplingSizes& s) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_SAMPLING_TYPES(value.scalar_type(), locations.scalar_type(), "sampling_backward_cuda", [&] {
    sampling_backward_kernel<scalar_t, param_t><<<sampling_blocks(s), kSamplingWarpsPerBlock * kWarpSize, 0, stream>>>(
        value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(),
        locations.data_ptr<param_t>(), weights.data_ptr<param_t>(), grad_output.data_ptr<scalar_t>(),
        grad_value_acc.data_ptr<acc_type<scalar_t>>(), grad_locations.data_ptr<param_t>(),
        grad_weights.data_ptr<param_t>(), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace posetr
