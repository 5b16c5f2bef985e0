// Multi-scale deformable attention on CUDA: checks, allocation and the launch of
// the sampling kernels in common/sampling_cuda.cuh (shared with EMSDA; their math
// is common/bilinear.h, shared with the CPU kernel).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/sampling_cuda.cuh"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {
namespace {

at::Tensor ms_deform_attn_cuda(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                               const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights, int64_t im2col_step) {
  const SamplingInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                                   sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  const c10::cuda::CUDAGuard guard(value.device());
  auto output = at::empty({s.N, s.Lq, s.M * s.D}, value.options());
  if (output.numel() == 0) return output;
  launch_sampling_forward(in.value, in.shapes, in.starts, in.locations, in.weights, output, s);
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const SamplingInputs in = prepare_ms_deform_attn(value, value_spatial_shapes, value_level_start_index,
                                                   sampling_locations, attention_weights, im2col_step);
  const c10::cuda::CUDAGuard guard(value.device());
  MsdaGrads g = prepare_ms_deform_attn_grads(in, grad_output);
  if (g.work) {
    launch_sampling_backward(in.value, in.shapes, in.starts, in.locations, in.weights, g.grad_output,
                             g.grad_value_acc, g.grad_locations, g.grad_weights, in.sizes);
  }
  return sampling_grads_like_inputs(g.grad_value_acc, g.grad_locations, g.grad_weights, value, sampling_locations,
                                    attention_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("ms_deform_attn", &ms_deform_attn_cuda);
  m.impl("_ms_deform_attn_backward", &ms_deform_attn_backward_cuda);
}

}  // namespace posetr
