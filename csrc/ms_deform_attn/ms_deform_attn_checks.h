// Host-side argument checks and sizes for ms_deform_attn, shared by the CPU and
// CUDA entry points (and by EMSDA, which samples the same multi-scale layout).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "common/checks.h"
#include "common/sampling.h"

namespace posetr {

// The largest H or W of a level: 2^31 - 1.
constexpr int64_t kMaxLevelSide = 2147483647;

// Checks value_spatial_shapes [L, 2] (int64 rows H, W) and value_level_start_index [L]
// against a value map with S spatial positions on `device`.
inline void check_levels(const at::Tensor& value_spatial_shapes, const at::Tensor& value_level_start_index, int64_t S,
                         const at::Tensor& value, const char* value_name) {
  check_dim(value_spatial_shapes, "value_spatial_shapes", 2, "[L, 2] of (H, W)");
  check_size(value_spatial_shapes, "value_spatial_shapes", 1, 2, "(H, W) per level");
  check_dtype(value_spatial_shapes, "value_spatial_shapes", at::kLong, "integer (H, W) per level");
  check_dim(value_level_start_index, "value_level_start_index", 1, "[L]");
  check_dtype(value_level_start_index, "value_level_start_index", at::kLong, "integer offsets");
  const int64_t L = value_spatial_shapes.size(0);
  check_size(value_level_start_index, "value_level_start_index", 0, L, "one start per level of value_spatial_shapes");
  check_same_device(value_spatial_shapes, "value_spatial_shapes", value, value_name);
  check_same_device(value_level_start_index, "value_level_start_index", value, value_name);
  // The level layout decides every memory offset: check it on the host.
  const at::Tensor shapes = value_spatial_shapes.cpu().contiguous();
  const at::Tensor starts = value_level_start_index.cpu().contiguous();
  const int64_t* hw = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = hw[2 * l], W = hw[2 * l + 1];
    TORCH_CHECK_VALUE(H >= 0 && W >= 0, "value_spatial_shapes[", l, "] must be non-negative (H, W), got (", H, ", ",
                      W, ")");
    TORCH_CHECK_VALUE(st[l] == total, "value_level_start_index[", l, "] must be ", total,
                      " (the sum of H * W over the levels before it), got ", st[l]);
    // Bounded before multiplying: a wrapped H * W (or sum) that matched S would send
    // the kernels far outside value. Below 2^31 each, H * W and the kernels' index
    // arithmetic fit in int64 (an empty level may be wider than S); 0 <= total <= S.
    TORCH_CHECK_VALUE(H <= kMaxLevelSide && W <= kMaxLevelSide, "value_spatial_shapes[", l, "] = (", H, ", ", W,
                      "): H and W must each be at most ", kMaxLevelSide);
    TORCH_CHECK_VALUE(H * W <= S - total, value_name, ".size(1) must equal sum(H * W) over value_spatial_shapes, got ",
                      S, ", but value_spatial_shapes[", l, "] = (", H, ", ", W, ") needs more than the ", S - total,
                      " positions the levels before it leave");
    total += H * W;
  }
  TORCH_CHECK_VALUE(total == S, value_name, ".size(1) must equal sum(H * W) over value_spatial_shapes = ", total,
                    ", got ", S);
}

// The dtypes sampling_locations and attention_weights may have: value's, or float32
// when value is float16 or bfloat16 (autocast's mixed precision; the kernels then
// keep the locations in float32, see kernel_param_dtype).
inline void check_param_dtype(const at::Tensor& t, const char* name, const at::Tensor& value, const char* value_name) {
  const auto v = value.scalar_type(), p = t.scalar_type();
  const bool reduced = v == at::kHalf || v == at::kBFloat16;
  TORCH_CHECK_VALUE(p == v || (reduced && p == at::kFloat), name, " must have the dtype of ", value_name, " (", v, ")",
                    reduced ? " or be float32" : "", ", got ", p);
}

// The one dtype in which the kernels read sampling_locations and attention_weights
// and write their gradients: float32 if either is float32 (a float16/bfloat16 value),
// else value's dtype.
inline at::ScalarType kernel_param_dtype(const at::Tensor& value, const at::Tensor& sampling_locations,
                                         const at::Tensor& attention_weights) {
  const bool mixed = sampling_locations.scalar_type() != value.scalar_type() ||
                     attention_weights.scalar_type() != value.scalar_type();
  return mixed ? at::kFloat : value.scalar_type();
}

// Checks sampling_locations [N, Lq, M, L, P, 2] and attention_weights [N, Lq, M, L, P]
// against a value with batch N, M heads and L levels: dtypes as check_param_dtype, value's device.
inline void check_sampling(const at::Tensor& sampling_locations, const at::Tensor& attention_weights, int64_t N,
                           int64_t M, int64_t L, const at::Tensor& value, const char* value_name) {
  check_dim(sampling_locations, "sampling_locations", 6, "[N, Lq, M, L, P, 2]");
  check_dim(attention_weights, "attention_weights", 5, "[N, Lq, M, L, P]");
  check_size(sampling_locations, "sampling_locations", 0, N, "batch size N of value");
  check_size(sampling_locations, "sampling_locations", 2, M, "number of heads M");
  check_size(sampling_locations, "sampling_locations", 3, L, "number of levels L of value_spatial_shapes");
  check_size(sampling_locations, "sampling_locations", 5, 2, "normalised (x, y)");
  TORCH_CHECK_VALUE(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
                    "attention_weights must have shape [N, Lq, M, L, P] = ", sampling_locations.sizes().slice(0, 5),
                    " to match sampling_locations, got ", attention_weights.sizes());
  check_param_dtype(sampling_locations, "sampling_locations", value, value_name);
  check_param_dtype(attention_weights, "attention_weights", value, value_name);
  check_same_device(sampling_locations, "sampling_locations", value, value_name);
  check_same_device(attention_weights, "attention_weights", value, value_name);
}

// All ms_deform_attn checks; returns the sizes.
inline SamplingSizes check_ms_deform_attn(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                                      const at::Tensor& value_level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, int64_t im2col_step) {
  check_dim(value, "value", 4, "[N, S, M, D]");
  check_floating(value, "value");
  TORCH_CHECK_VALUE(im2col_step > 0, "im2col_step must be positive, got ", im2col_step);
  SamplingSizes s{value.size(0), value.size(1), value.size(2), value.size(3), 0, 0, 0, /*value_heads=*/value.size(2)};
  check_levels(value_spatial_shapes, value_level_start_index, s.S, value, "value");
  s.L = value_spatial_shapes.size(0);
  check_sampling(sampling_locations, attention_weights, s.N, s.M, s.L, value, "value");
  s.Lq = sampling_locations.size(1);
  s.P = sampling_locations.size(4);
  return s;
}

// Checked, contiguous inputs of a sampling op (MSDA or EMSDA) as both backends consume
// them: locations and weights in the one dtype of kernel_param_dtype.
struct SamplingInputs {
  at::Tensor value, shapes, starts, locations, weights;
  SamplingSizes sizes;
};

inline SamplingInputs contiguous_sampling_inputs(const SamplingSizes& s, const at::Tensor& value,
                                                 const at::Tensor& value_spatial_shapes,
                                                 const at::Tensor& value_level_start_index,
                                                 const at::Tensor& sampling_locations,
                                                 const at::Tensor& attention_weights) {
  const auto param = kernel_param_dtype(value, sampling_locations, attention_weights);
  return {value.contiguous(),
          value_spatial_shapes.contiguous(),
          value_level_start_index.contiguous(),
          sampling_locations.to(param).contiguous(),
          attention_weights.to(param).contiguous(),
          s};
}

// A sampling op's gradients in the dtypes of its inputs: grad_value from its
// accumulator, the location and weight gradients from the kernel's param dtype.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> sampling_grads_like_inputs(
    const at::Tensor& grad_value_acc, const at::Tensor& grad_locations, const at::Tensor& grad_weights,
    const at::Tensor& value, const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  return {grad_value_acc.to(value.scalar_type()), grad_locations.to(sampling_locations.scalar_type()),
          grad_weights.to(attention_weights.scalar_type())};
}

inline SamplingInputs prepare_ms_deform_attn(const at::Tensor& value, const at::Tensor& value_spatial_shapes,
                                             const at::Tensor& value_level_start_index,
                                             const at::Tensor& sampling_locations,
                                             const at::Tensor& attention_weights, int64_t im2col_step) {
  const SamplingSizes s = check_ms_deform_attn(value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                               attention_weights, im2col_step);
  return contiguous_sampling_inputs(s, value, value_spatial_shapes, value_level_start_index, sampling_locations,
                                    attention_weights);
}

// The gradients ms_deform_attn's backward fills. grad_value is accumulated in
// float32 for half and bfloat16 (float64 for float64) and cast back at the end.
// When there is work, the kernels write every element of grad_locations and
// grad_weights (zeros for out-of-map samples), so those are left uninitialised; they
// have the kernel's param dtype (sampling_grads_like_inputs casts them back).
struct MsdaGrads {
  at::Tensor grad_output, grad_value_acc, grad_locations, grad_weights;
  bool work;  // false: nothing to sample (empty grad_output or value); all gradients are zero
};

inline MsdaGrads prepare_ms_deform_attn_grads(const SamplingInputs& in, const at::Tensor& grad_output) {
  const SamplingSizes& s = in.sizes;
  check_dim(grad_output, "grad_output", 3, "[N, Lq, M * D]");
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef({s.N, s.Lq, s.M * s.D}),
                    "grad_output must have shape [N, Lq, M * D] = [", s.N, ", ", s.Lq, ", ", s.M * s.D, "], got ",
                    grad_output.sizes());
  check_same_device(grad_output, "grad_output", in.value, "value");
  const auto acc_dtype = in.value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const bool work = grad_output.numel() > 0 && in.value.numel() > 0;
  const auto make = [work](const at::Tensor& like) { return work ? at::empty_like(like) : at::zeros_like(like); };
  return {grad_output.to(in.value.scalar_type()).contiguous(),
          at::zeros(in.value.sizes(), in.value.options().dtype(acc_dtype)), make(in.locations), make(in.weights),
          work};
}

}  // namespace posetr
