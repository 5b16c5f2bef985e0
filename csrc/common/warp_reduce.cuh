// Warp-level reductions for CUDA kernels.
#pragma once

namespace posetr {

constexpr int kWarpSize = 32;

// Sum of `v` over the 32 lanes of a fully active warp, returned to every lane.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

}  // namespace posetr
