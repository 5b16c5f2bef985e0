// Argument checks shared by every op. Each message names the argument and what
// was expected; shape and dtype errors raise ValueError, device errors RuntimeError.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace posetr {

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be a ", dim, "-D tensor ", layout, ", got shape ", t.sizes());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t axis, int64_t expected, const char* what) {
  TORCH_CHECK_VALUE(t.size(axis) == expected, name, ".size(", axis, ") must be ", expected, " (", what, "), got shape ",
                    t.sizes());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_VALUE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, name,
                    " must be float64, float32, float16 or bfloat16, got ", s);
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType expected, const char* why) {
  TORCH_CHECK_VALUE(t.scalar_type() == expected, name, " must be ", expected, " (", why, "), got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name, " is on ", ref.device(),
              "; all inputs must be on one device");
}

}  // namespace posetr
