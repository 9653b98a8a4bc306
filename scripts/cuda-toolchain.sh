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
    # LIBRARY_PATH (read by the cc that links) finds the libcuda stub without a RUSTFLAGS change.
    echo "export PATH=$D/bin:\$PATH CUDA_ROOT=$D CUDA_PATH=$D RUSTFLAGS=\"-L $D/lib\" LIBRARY_PATH=$D/lib/stubs"
    exit 0
fi
D=${1:-/opt/cuda13}
V=13.0
pip install -q --target "$D/py" nvidia-cuda-nvcc==$V.88 nvidia-cuda-runtime==$V.96 nvidia-cuda-crt==$V.88 \
    nvidia-cuda-nvrtc==$V.88 nvidia-cuda-cccl==$V.85 nvidia-cublas==13.0.0.19
pip install -q --target "$D/nvvm" --no-deps nvidia-nvvm==$V.88
# Separate targets: pip --target skips a top-level folder (nvidia/) that already exists.
pip install -q --target "$D/curand" --no-deps nvidia-curand==10.4.0.35
C=$D/py/nvidia/cu13
rm -rf "$C/nvvm"
cp -a "$D/nvvm/nvidia/cu13/nvvm" "$C/"
cp -a "$D/nvvm/nvidia/cu13/lib/"* "$C/lib/"
cp -a "$D/nvvm/nvidia/cu13/include/"* "$C/include/"
cp -a "$D/curand/nvidia/cu13/lib/"* "$C/lib/"
cp -a "$D/curand/nvidia/cu13/include/"* "$C/include/"
cd "$C/lib"
for l in cublasLt cublas cudart nvrtc curand; do
    for so in lib$l.so.13 lib$l.so.10; do
        if [ -e $so ]; then ln -sf $so lib$l.so; fi
    done
done
# cudarc links the driver (-lcuda, candle enables its `dynamic-linking`), which no wheel ships: a link-time
# stub, like the toolkit's lib64/stubs/libcuda.so: every driver entry point of cuda.h (both the plain and
# the _v2/_v3 names) returning CUDA_ERROR_STUB_LIBRARY (34). Its soname is libcuda.so.1, so the binary
# loads the real driver's libcuda.so.1 on the GPU machine. The binary cannot start where no libcuda.so.1
# exists at all (not even with --device cpu); stubs-run/ has the stub under that name for such a check.
mkdir -p stubs stubs-run
{
    gcc -E -P -I"$C/include" -x c - <<<'#include <cuda.h>' | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' || true
    grep -oE 'CUDAAPI\s+cu[A-Za-z0-9_]+\s*\(' "$C/include/cuda.h" | sed 's/^CUDAAPI//' || true
} | grep -oE 'cu[A-Za-z0-9_]+' | sort -u | sed 's/.*/int &(void) { return 34; }/' > stubs/libcuda.c
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so stubs/libcuda.c
ln -sf ../stubs/libcuda.so stubs-run/libcuda.so.1
echo "libcuda stub: $(wc -l < stubs/libcuda.c) entry points"
ln -sfn lib "$C/lib64"
"$C/bin/nvcc" --version | tail -1
