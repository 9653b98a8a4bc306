#!/usr/bin/env bash
# A CUDA 13.0 build toolchain from PyPI wheels, for `cargo build --features cuda` on a machine without a
# CUDA install (the development machines here): nvcc, headers (CCCL), libnvvm matching nvcc (a newer nvvm
# emits PTX the 13.0 ptxas rejects: "Unsupported .version 9.5"), and link-time stubs for cudart/cublas.
# The result runs on a GPU machine whose driver supports CUDA 13.0 (e.g. 580.x); its CUDA libraries are
# loaded at run time (LD_LIBRARY_PATH there).
#
#   scripts/cuda-toolchain.sh [DIR]        # default /opt/cuda13
#   eval "$(scripts/cuda-toolchain.sh env [DIR])"
#   CUDA_COMPUTE_CAP=90 cargo build --release --features cuda     # 90 = H100/H200
#
# Status (2026-11-26): each step was done by hand and candle-kernels compiled with it (~25 min on 2 cores,
# nvcc + ptxas for sm_90a); the first link failed on -lcublasLt/-lcudart, which the stubs and RUSTFLAGS below
# address, but that final link was not re-run to the end. Verify before relying on it.
set -euo pipefail
if [ "${1:-}" = env ]; then
    D=${2:-/opt/cuda13}/py/nvidia/cu13
    echo "export PATH=$D/bin:\$PATH CUDA_ROOT=$D CUDA_PATH=$D RUSTFLAGS=\"-L $D/lib\""
    exit 0
fi
D=${1:-/opt/cuda13}
V=13.0
pip install -q --target "$D/py" nvidia-cuda-nvcc==$V.88 nvidia-cuda-runtime==$V.96 nvidia-cuda-crt==$V.88 \
    nvidia-cuda-nvrtc==$V.88 nvidia-cuda-cccl==$V.85 nvidia-cublas==13.0.0.19
pip install -q --target "$D/nvvm" --no-deps nvidia-nvvm==$V.88
C=$D/py/nvidia/cu13
rm -rf "$C/nvvm"
cp -a "$D/nvvm/nvidia/cu13/nvvm" "$C/"
cp -a "$D/nvvm/nvidia/cu13/lib/"* "$C/lib/"
cp -a "$D/nvvm/nvidia/cu13/include/"* "$C/include/"
cd "$C/lib"
for l in cublasLt cublas cudart nvrtc; do
    [ -e lib$l.so.13 ] && ln -sf lib$l.so.13 lib$l.so
done
ln -sfn lib "$C/lib64"
"$C/bin/nvcc" --version | tail -1
