"""Builds posetr._C: CPU kernels always, CUDA kernels when asked for or possible.

CUDA is built when ``FORCE_CUDA=1`` or when torch was built with CUDA, a GPU is
visible and ``CUDA_HOME`` is set. ``TORCH_CUDA_ARCH_LIST`` defaults to "8.0;9.0".
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def _extension():
    cpp_sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp"]
    common = dict(
        name="posetr._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if not _want_cuda():
        return CppExtension(sources=cpp_sources, extra_compile_args={"cxx": cxx_flags}, **common)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    cuda_sources = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    nvcc_flags = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
    return CUDAExtension(
        sources=cpp_sources + cuda_sources,
        define_macros=[("POSETR_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        **common,
    )


setup(
    # configs/ stays at the top of the repository and is installed as posetr/configs/*.yaml
    # (posetr/config_files.py finds either; `--config NAME` resolves to it)
    packages=find_packages(include=["posetr", "posetr.*"]) + ["posetr.configs"],
    package_dir={"posetr.configs": "configs"},
    package_data={"posetr.configs": ["*.yaml"]},
    py_modules=["MultiScaleDeformableAttention"],
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
