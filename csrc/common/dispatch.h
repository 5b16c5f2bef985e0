// Dtype dispatch and the accumulation type shared by every op.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

// Floating types the kernels accept: float64, float32, float16, bfloat16.
#define POSETR_DISPATCH_FLOATING_TYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

namespace posetr {
// float32 for float16/bfloat16/float32, float64 for float64.
template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;
}  // namespace posetr
