#!/usr/bin/env bash
# A CUDA 13.0 build toolchain from PyPI wheels, for `cargo build --features cuda` on a machine without a
# CUDA install (the development machines here): nvcc, headers (CCCL), libnvvm matching nvcc (a newer nvvm
# emits PTX the 13.0 ptxas rejects: "Unsupported .version 9.5"), the cudart/cublas/curand/nvrtc libraries with
# the lib*.so names the linker looks for, and a link-time stub of the driver's libcuda.so.
# The result runs on a GPU machine whose driver supports CUDA 13.0 (e.g. 580.x); its CUDA libraries are
# loaded at run time (LD_LIBRARY_PATH there).
#
#   scripts/cuda-toolchain.sh [DIR]        # default /opt/cuda13
#   eval "$(scripts/cuda-toolchain.sh env [DIR])"
#   CUDA_COMPUTE_CAP=90 cargo build --release --features cuda     # 90 = H100/H200
#   C=/opt/cuda13/py/nvidia/cu13; LD_LIBRARY_PATH=$C/lib:$C/lib/stubs-run target/release/mlvf ... --device cpu
#
# Status (2026-11-26): verified to the end on a 2-core machine without GPU or CUDA install: with this script's
# /opt/cuda13 and `eval "$(scripts/cuda-toolchain.sh env)"`,
#   CUDA_COMPUTE_CAP=90 CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --features cuda --bin mlvf
# compiled and linked in 25 min (nice 19, -j 2; candle-kernels' PTX/.o for sm_90a reused from an earlier
# build, ~25 min more when compiled afresh); the plain `cargo build --release --features cuda --bin mlvf`
# (release profile's line-tables debug info) then also linked, in 51 min while the machine was busy. The
# binary: 108 MB (679 MB with line tables), 93 MB stripped either way (14 MB xz); it needs at run
# time libcuda.so.1 (the driver), libcudart.so.13, libcublas.so.13 (+ libcublasLt.so.13), libcurand.so.10.
# With LD_LIBRARY_PATH=$C/lib:$C/lib/stubs-run (as above) it ran `inspect llm` on --device cpu (logits bit-identical to
# the CPU-only build; tests llm_cli, vision_cli pass) and --device cuda:0 failed with a clear error naming the
# stub. The first link had failed on -lcublasLt/-lcudart (no .so links); -lcuda (no wheel has the driver)
# and -lcurand (wheel was missing) needed the stub and the curand wheel added here. The script was re-run
# over the existing /opt/cuda13 with its pip steps skipped (curand installed by hand with the same wheel);
# a run into an empty DIR was not repeated. Not yet run on a GPU (scripts/gpu-check.sh is for that).
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
