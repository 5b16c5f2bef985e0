"""posetr: fast kernels and models for end-to-end pose-estimation transformers."""
from posetr._ext import HAS_EXTENSION, HAS_CUDA_KERNELS
from posetr import ops
from posetr.environment import info

__version__ = "0.1.0"
__all__ = ["ops", "HAS_EXTENSION", "HAS_CUDA_KERNELS", "__version__", "info"]
