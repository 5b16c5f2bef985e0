// EMSDA's fused sampling on CUDA: every head samples all C channels of the one
// un-projected value map. Checks, allocation and the launch of the sampling kernels
// in common/sampling_cuda.cuh (shared with MSDA, value_heads = 1); every head of
// batch item n scatters into grad_value[n] with atomics.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common/sampling_cuda.cuh"
#include "emsda/emsda_checks.h"

namespace posetr {
namespace {

at::Tensor emsda_sample_cuda(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                             const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                             const at::Tensor& attention_weights, int64_t im2col_step) {
  const SamplingInputs in = prepare_emsda_sample(value, value_spatial_shapes, value_level_start_index,
                                                 sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  const c10::cuda::CUDAGuard guard(value.device());
  auto output = at::empty({s.N, s.Lq, s.M, s.D}, value.options());
  // With no value positions every sample reads zeros.
  if (output.numel() == 0 || s.S == 0) return output.zero_();
  launch_sampling_forward(in.value, in.shapes, in.starts, in.locations, in.weights, output, s);
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emsda_sample_backward_cuda(
    const at::Tensor& value, const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_output,
    int64_t im2col_step) {
  const SamplingInputs in = prepare_emsda_sample(value, value_spatial_shapes, value_level_start_index,
                                                 sampling_locations, attention_weights, im2col_step);
  const SamplingSizes& s = in.sizes;
  check_emsda_grad_output(grad_output, s, value);
  const c10::cuda::CUDAGuard guard(value.device());
  const auto acc_dtype = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(acc_dtype));
  auto grad_locations = at::zeros_like(in.locations);
  auto grad_weights = at::zeros_like(in.weights);
  if (grad_output.numel() > 0 && value.numel() > 0) {
    launch_sampling_backward(in.value, in.shapes, in.starts, in.locations, in.weights,
                             grad_output.to(value.scalar_type()).contiguous(), grad_value, grad_locations,
                             grad_weights, s);
  }
  return sampling_grads_like_inputs(grad_value, grad_locations, grad_weights, value, sampling_locations,
                                    attention_weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(posetr, CUDA, m) {
  m.impl("emsda_sample", &emsda_sample_cuda);
  m.impl("_emsda_sample_backward", &emsda_sample_backward_cuda);
}

}  // namespace posetr
