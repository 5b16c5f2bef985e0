// Dtype dispatch and the accumulation type shared by every op.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <type_traits>

// Floating types the kernels accept: float64, float32, float16, bfloat16.
#define POSETR_DISPATCH_FLOATING_TYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

// The sampling ops' dispatch: scalar_t is the dtype of the value, param_t that of the
// sampling locations and attention weights, which is scalar_t or, for a float16 or
// bfloat16 value, float (PARAM_TYPE == at::kFloat): mixed precision keeps the
// locations in float32 inside the kernel.
#define POSETR_DISPATCH_SAMPLING_TYPES(VALUE_TYPE, PARAM_TYPE, NAME, ...)                        \
  POSETR_DISPATCH_FLOATING_TYPES(VALUE_TYPE, NAME, [&] {                                         \
    if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) { \
      if ((PARAM_TYPE) == at::kFloat) {                                                          \
        using param_t = float;                                                                   \
        return __VA_ARGS__();                                                                    \
      }                                                                                          \
    }                                                                                            \
    using param_t = scalar_t;                                                                    \
    return __VA_ARGS__();                                                                        \
  })

namespace posetr {
// float32 for float16/bfloat16/float32, float64 for float64.
template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;
}  // namespace posetr
