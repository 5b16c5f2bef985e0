// Host-side argument checks for batched_linear_sum_assignment, shared by the CPU
// and CUDA entry points. Per-item sizes stay on the device (the CUDA path never
// reads them on the host): the kernels report out-of-range sizes per item instead.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <optional>

#include "common/checks.h"

namespace posetr {

// Checks cost [B, N, M] (float32/float64) and the optional per-item sizes [B] (int64).
inline void check_lap_inputs(const at::Tensor& cost, const std::optional<at::Tensor>& num_rows,
                             const std::optional<at::Tensor>& num_cols) {
  check_dim(cost, "cost", 3, "[B, N, M]");
  TORCH_CHECK_VALUE(cost.scalar_type() == at::kFloat || cost.scalar_type() == at::kDouble,
                    "cost must be float32 or float64, got ", cost.scalar_type());
  TORCH_CHECK_VALUE(cost.size(1) < std::numeric_limits<int32_t>::max() &&
                        cost.size(2) < std::numeric_limits<int32_t>::max(),
                    "cost: N and M must be below 2^31 - 1, got shape ", cost.sizes());
  const std::optional<at::Tensor>* sizes[2] = {&num_rows, &num_cols};
  const char* names[2] = {"num_rows", "num_cols"};
  for (int k = 0; k < 2; ++k) {
    if (!sizes[k]->has_value()) continue;
    const at::Tensor& t = sizes[k]->value();
    check_dim(t, names[k], 1, "[B]");
    check_size(t, names[k], 0, cost.size(0), "one size per batch item of cost");
    check_dtype(t, names[k], at::kLong, "integer sizes");
    check_same_device(t, names[k], cost, "cost");
  }
}

}  // namespace posetr
