// EMSDA's fused sampling on CUDA.
//
// One warp per (n, q, m) row; its lanes stride over the C channels of the one
// un-projected value map, so value reads are coalesced and the per-sample gradients
// with respect to the location and the attention weight are warp-shuffle reductions
// over C. Every head of batch item n scatters into grad_value[n] with atomics
// (float32 for half/bfloat16 inputs). The per-sample math is emsda/emsda_math.h and
// common/bilinear.h, shared with the CPU kernel.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/accumulate.h"
#include "common/dispatch.h"
#include "common/warp_reduce.cuh"
#include "emsda/emsda_checks.h"
#include "emsda/emsda_math.h"

namespace posetr {
namespace {

constexpr int kWarpsPerBlock = 4;

// The (n, q, m) row of this warp, or -1 past the end.
__device__ __forceinline__ int64_t warp_row(int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  return row < rows ? row : -1;
}

template <typename scalar_t>
__global__ void sample_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                              const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                              const scalar_t* __restrict__ weights, scalar_t* __restrict__ output, EmsdaSizes s) {
  using acc_t = acc_type<scalar_t>;
  const int64_t row = warp_row(s.N * s.Lq * s.M);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = row / (s.Lq * s.M);
  for (int64_t d = lane; d < s.C; d += kWarpSize) {
    acc_t acc = 0;
    for (int64_t l = 0; l < s.L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* level = value + (n * s.S + starts[l]) * s.C + d;
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t idx = (row * s.L + l) * s.P + p;
        BilinearCorners<acc_t> c;
        if (!emsda_corners<acc_t>(locations, idx, H, W, c)) continue;
        acc_t corner[4];
        for (int i = 0; i < 4; ++i) corner[i] = c.valid[i] ? static_cast<acc_t>(level[c.offset[i] * s.C]) : acc_t(0);
        acc += static_cast<acc_t>(weights[idx]) * bilinear_combine(c, corner);
      }
    }
    output[row * s.C + d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void sample_backward_kernel(const scalar_t* __restrict__ value, const int64_t* __restrict__ shapes,
                                       const int64_t* __restrict__ starts, const scalar_t* __restrict__ locations,
                                       const scalar_t* __restrict__ weights, const scalar_t* __restrict__ grad_output,
                                       acc_type<scalar_t>* __restrict__ grad_value,
                                       scalar_t* __restrict__ grad_locations, scalar_t* __restrict__ grad_weights,
                                       EmsdaSizes s) {
  using acc_t = acc_type<scalar_t>;
  // Whole warps exit together, so every shuffle below sees 32 active lanes.
  const int64_t row = warp_row(s.N * s.Lq * s.M);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t n = row / (s.Lq * s.M);
  const scalar_t* go = grad_output + row * s.C;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    const int64_t level = (n * s.S + starts[l]) * s.C;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t idx = (row * s.L + l) * s.P + p;
      BilinearCorners<acc_t> c;
      // The same location for every lane: the branch is warp-uniform.
      if (!emsda_corners<acc_t>(locations, idx, H, W, c)) continue;
      const acc_t a = weights[idx];
      acc_t dot[4] = {0, 0, 0, 0};
      for (int64_t d = lane; d < s.C; d += kWarpSize) {
        const acc_t g = go[d];
        for (int i = 0; i < 4; ++i) {
          if (!c.valid[i]) continue;
          const int64_t at = level + c.offset[i] * s.C + d;
          dot[i] += g * static_cast<acc_t>(value[at]);
          accumulate(grad_value + at, a * c.weight[i] * g);
        }
      }
      for (int i = 0; i < 4; ++i) dot[i] = warp_sum(dot[i]);
      if (lane == 0) emsda_sample_grads(c, dot, H, W, a, idx, grad_locations, grad_weights);
    }
  }
}

unsigned int num_blocks(const EmsdaSizes& s) {
  return static_cast<unsigned int>((s.N * s.Lq * s.M + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

at::Tensor emsda_sample_cuda(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                             const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                             const at::Tensor& attention_weights, int64_t im2col_step) {
  const EmsdaSizes s = check_emsda_sample(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                          attention_weights, im2col_step);
  const c10::cuda::CUDAGuard guard(value.device());
  const auto v = value.contiguous();
  const auto shapes = value_spatial_shapes.contiguous();
  const auto starts = value_level_start_index.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto output = at::empty({s.N, s.Lq, s.M, s.C}, value.options());
  // With no value positions every sample reads zeros.
  if (output.numel() == 0 || s.S == 0) return output.zero_();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "emsda_sample_cuda", [&] {
    sample_kernel<scalar_t><<<num_blocks(s), kWarpsPerBlock * kWarpSize, 0, stream>>>(
        v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
        attn.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emsda_sample_backward_cuda(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const EmsdaSizes s = check_emsda_sample(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                          attention_weights, im2col_step);
  check_emsda_grad_output(grad_output, s, value);
  const c10::cuda::CUDAGuard guard(value.device());
  const auto v = value.contiguous();
  const auto shapes = value_spatial_shapes.contiguous();
  const auto starts = value_level_start_index.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  const auto go = grad_output.to(value.scalar_type()).contiguous();
  const auto acc_dtype = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  auto grad_locations = at::zeros(sampling_locations.sizes(), sampling_locations.options());
  auto grad_weights = at::zeros(attention_weights.sizes(), attention_weights.options());
  if (go.numel() > 0 && value.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    POSETR_DISPATCH_FLOATING_TYPES(value.scalar_type(), "emsda_sample_backward_cuda", [&] {
      sample_backward_kernel<scalar_t><<<num_blocks(s), kWarpsPerBlock * kWarpSize, 0, stream>>>(
          v.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), loc.data_ptr<scalar_t>(),
          attn.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), grad_value.data_ptr<acc_type<scalar_t>>(),
          grad_locations.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), s);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("emsda_sample", &emsda_sample_cuda);
  m.impl("_emsda_sample_backward", &emsda_sample_backward_cuda);
}

}  // namespace posetr
