// Multi-scale deformable attention on CUDA.
//
// One warp per (n, q, m) row; its lanes stride over the D channels, so value reads
// are coalesced and the per-sample gradients with respect to the location and the
// attention weight are warp-shuffle reductions over D (any D, not only powers of
// two). grad_value is scattered with atomics (float32 for half/bfloat16 inputs),
// the only place two rows may write the same address. The bilinear math is
// common/bilinear.h, shared with the CPU kernel.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/accumulate.h"
#include "common/bilinear.h"
#include "common/dispatch.h"
#include "common/warp_reduce.cuh"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

constexpr int kWarpsPerBlock = 4;

// The (n, q, m) row of this warp, or -1 past the end.
__device__ __forceinline__ int64_t warp_row(int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  return row < rows ? row : -1;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                               const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                               const scalar_t* __restrict__ weights, scalar_t* __restrict__ output, MsdaSizes s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t row = warp_row(s.N * s.Lq * s.M);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t m = row % s.M, n = row / (s.Lq * s.M), MD = s.M * s.D;
  for (int64_t d = lane; d < s.D; d += kWarpSize) {
    acc_t acc = 0;
    for (int64_t l = 0; l < s.L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* level = value + ((n * s.S + starts[l]) * s.M + m) * s.D + d;
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t idx = (row * s.L + l) * s.P + p;
        BilinearCorners<acc_t> c;
        if (!bilinear_corners<acc_t>(locations[2 * idx], locations[2 * idx + 1], H, W, c)) continue;
        acc_t corner[4];
        for (int i = 0; i < 4; ++i) corner[i] = c.valid[i] ? static_cast<acc_t>(level[c.offset[i] * MD]) : acc_t(0);
        acc += static_cast<acc_t>(weights[idx]) * bilinear_combine(c, corner);
      }
    }
    output[row * s.D + d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                                const scalar_t* __restrict__ weights, const scalar_t* __restrict__ grad_output,
                                acc_type<scalar_t>* __restrict__ grad_value, scalar_t* __restrict__ grad_locations,
                                scalar_t* __restrict__ grad_weights, MsdaSizes s) {
  using acc_t = acc_type<scalar_t>;
  // Whole warps exit together, so every shuffle below sees 32 active lanes.
  const int64_t row = warp_row(s.N * s.Lq * s.M);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t m = row % s.M, n = row / (s.Lq * s.M), MD = s.M * s.D;
  const scalar_t* go = grad_output + row * s.D;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t level = ((n * s.S + starts[l]) * s.M + m) * s.D;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t idx = (row * s.L + l) * s.P + p;
      BilinearCorners<acc_t> c;
      // The same location for every lane: the branch is warp-uniform.
      if (!bilinear_corners<acc_t>(locations[2 * idx], locations[2 * idx + 1], H, W, c)) continue;
      const acc_t a = weights[idx];
      acc_t dot[4] = {0, 0, 0, 0};
      for (int64_t d = lane; d < s.D; d += kWarpSize) {
        const acc_t g = go[d];
        for (int i = 0; i < 4; ++i) {
          if (!c.valid[i]) continue;
          const int64_t at = level + c.offset[i] * MD + d;
          dot[i] += g * static_cast<acc_t>(value[at]);
          accumulate(grad_value + at, a * c.weight[i] * g);
        }
      }
      for (int i = 0; i < 4; ++i) dot[i] = warp_sum(dot[i]);
      if (lane == 0) {
        grad_weights[idx] = static_cast<scalar_t>(bilinear_combine(c, dot));
        acc_t gx = 0, gy = 0;
        bilinear_location_grad(c, dot, H, W, a, gx, gy);
        grad_locations[2 * idx] = static_cast<scalar_t>(gx);
        grad_locations[2 * idx + 1] = static_cast<scalar_t>(gy);
      }
    }
  }
}

unsigned int num_blocks(const MsdaSizes& s) {
  return static_cast<unsigned int>((s.N * s.Lq * s.M + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

at::Tensor ms_deform_attn_cuda(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                               const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights, int64_t im2col_step) {
  const MsdaInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                               sampling_locations, attention_weights, im2col_step);
  const MsdaSizes& s = in.sizes;
  const c10::cuda::CUDAGuard guard(value.device());
  auto output = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  if (output.numel() == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cuda", [&] {
    forward_kernel<scalar_t><<<num_blocks(s), kWarpsPerBlock * kWarpSize, 0, stream>>>(
        in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(), in.starts.data_ptr<int64_t>(),
        in.locations.data_ptr<scalar_t>(), in.weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const MsdaInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                               sampling_locations, attention_weights, im2col_step);
  const c10::cuda::CUDAGuard guard(value.device());
  MsdaGrads g = prepare_ms_deform_attn_grads(in, grad_output);
  if (g.grad_output.numel() > 0 && value.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
      backward_kernel<scalar_t><<<num_blocks(in.sizes), kWarpsPerBlock * kWarpSize, 0, stream>>>(
          in.value.data_ptr<scalar_t>(), in.shapes.data_ptr<int64_t>(), in.starts.data_ptr<int64_t>(),
          in.locations.data_ptr<scalar_t>(), in.weights.data_ptr<scalar_t>(), g.grad_output.data_ptr<scalar_t>(),
          g.grad_value_acc.data_ptr<acc_type<scalar_t>>(), g.grad_locations.data_ptr<scalar_t>(),
          g.grad_weights.data_ptr<scalar_t>(), in.sizes);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {g.grad_value_acc.to(value.scalar_type()), g.grad_locations, g.grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cuda);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cuda);
}

}  // namespace posetr
