#!/usr/bin/env bash
# Compiles every .cu under csrc/ with nvcc for sm_80 and sm_90 (compile only: no GPU
# is needed). Fails if nvcc is missing or any file fails. Recipe: shared/DESIGN.md.
# Usage: check_cuda_compile.sh [FILE.cu ...]   (default: every .cu under csrc/)
#   CPU torch wheels ship the ATen and c10/cuda headers but not the generated
#   c10/cuda/impl/cuda_cmake_macros.h, so a one-line shim stands in for it.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || true)}
[ -n "$NVCC" ] || { echo "check_cuda_compile: nvcc not found" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/shim/c10/cuda/impl"
echo '#pragma once' > "$work/shim/c10/cuda/impl/cuda_cmake_macros.h"

torch_includes=$(python -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))")
python_include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
abi=$(python -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")

compile_one() {
  local src=$1 obj
  obj="$work/$(echo "$src" | tr '/' '_').o"
  if "$NVCC" -c "$src" -o "$obj" -std=c++20 --expt-relaxed-constexpr -Xcompiler -fPIC \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -DPOSETR_WITH_CUDA -D_GLIBCXX_USE_CXX11_ABI="$abi" -DTORCH_EXTENSION_NAME=_C \
      -Icsrc $torch_includes -I"$python_include" -I"$work/shim" > "$obj.log" 2>&1; then
    echo "ok      $src"
  else
    echo "FAILED  $src"; cat "$obj.log"; return 1
  fi
}
export -f compile_one
export NVCC work torch_includes python_include abi

if [ $# -gt 0 ]; then sources=("$@"); else mapfile -t sources < <(find csrc -name '*.cu' | sort); fi
[ "${#sources[@]}" -gt 0 ] || { echo "check_cuda_compile: no .cu files under csrc/" >&2; exit 1; }
printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -I{} bash -c 'compile_one {}'
echo "check_cuda_compile: ${#sources[@]} file(s) compiled for sm_80 and sm_90"
