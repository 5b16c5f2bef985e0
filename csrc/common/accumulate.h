// accumulate(): the one place where CPU and CUDA kernels differ in how they add
// into memory another thread may also write. CPU kernels partition their writes
// (no two tasks own the same address), so a plain add is enough; CUDA kernels
// scatter from many threads and use atomicAdd.
#pragma once

#include "common/host_device.h"

namespace posetr {

template <typename T>
POSETR_HD void accumulate(T* address, T value) {
#if defined(__CUDA_ARCH__)
  atomicAdd(address, value);
#else
  *address += value;
#endif
}

}  // namespace posetr
