// POSETR_HD marks math shared by the CPU loops and the CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define POSETR_HD __host__ __device__ __forceinline__
#else
#define POSETR_HD inline
#endif
