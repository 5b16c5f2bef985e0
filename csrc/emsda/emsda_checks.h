// Host-side argument checks and sizes for EMSDA's sampling op, shared by the CPU
// and CUDA entry points. The level layout and sampling checks are MSDA's.
#pragma once

#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/sampling.h"
#include "ms_deform_attn/ms_deform_attn_checks.h"

namespace posetr {

inline SamplingSizes check_emsda_sample(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                                     const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                                     const at::Tensor& attention_weights, int64_t im2col_step) {
  check_dim(value, "value", 3, "[N, S, C] (un-projected features)");
  check_floating(value, "value");
  TORCH_CHECK_VALUE(im2col_step > 0, "im2col_step must be positive, got ", im2col_step);
  // Every head reads all C channels of the one value map: value_heads = 1, D = C.
  SamplingSizes s{value.size(0), value.size(1), 0, value.size(2), 0, 0, 0, /*value_heads=*/1};
  check_levels(value_spatial_shapes, value_level_start_index, s.S, value, "value");
  s.L = value_spatial_shapes.size(0);
  // The heads come from the sampling locations: every head reads the same value.
  check_dim(sampling_locations, "sampling_locations", 6, "[N, Lq, M, L, P, 2]");
  s.M = sampling_locations.size(2);
  check_sampling(sampling_locations, attention_weights, s.N, s.M, s.L, value, "value");
  s.Lq = sampling_locations.size(1);
  s.P = sampling_locations.size(4);
  return s;
}

// Checked, contiguous inputs of EMSDA's sampling op (kernel dtypes as for MSDA).
inline SamplingInputs prepare_emsda_sample(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                                           const at::Tensor& value_level_start_index,
                                           const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
                                           int64_t im2col_step) {
  const SamplingSizes s = check_emsda_sample(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                             attention_weights, im2col_step);
  return contiguous_sampling_inputs(s, value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                    attention_weights);
}

// grad_output of the sampling op must be [N, Lq, M, C] on the device of value.
inline void check_emsda_grad_output(const at::Tensor& grad_output, const SamplingSizes& s, const at::Tensor& value) {
  check_dim(grad_output, "grad_output", 4, "[N, Lq, M, C]");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef({s.N, s.Lq, s.M, s.D}),
                    "grad_output must have shape [N, Lq, M, C] = [", s.N, ", ", s.Lq, ", ", s.M, ", ", s.D, "], got ",
                    grad_output.sizes());
  check_same_device(grad_output, "grad_output", value, "value");
}

}  // namespace posetr
