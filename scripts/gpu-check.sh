#!/usr/bin/env bash
# Device check for a `--features cuda` build of mlvf, in one call on a machine with an NVIDIA GPU and no Rust:
# CPU vs cuda:0 on every LLM fixture (`mlvf inspect llm`, logits) and vision fixture (`mlvf inspect vision`,
# every hidden state; f32 and bf16 on the GPU), max |Δ| and top-1 agreement, and a summary.
#
#   scripts/gpu-check.sh [MLVF]      # MLVF: the binary, or a .gz/.xz/.zst of it (default: $MLVF, dist/mlvf)
#
# Build it (see scripts/cuda-toolchain.sh; CUDA_COMPUTE_CAP=90 for H100/H200), strip and compress it, put it
# in the work tree (e.g. dist/mlvf.xz; an ignored path must be carried) and run this from the repository root.
# The binary needs the CUDA 13 user-space libraries at run time (libcudart.so.13, libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13) and the driver's libcuda.so.1 (CUDA 13.0 needs driver
# >= 580). They are looked up in $CUDA_LIBS (folders, space-separated, taken as given), the `nvidia` Python
# wheels (torch's), /usr/local/cuda*/lib64.
#
# Status: written and run on a machine without a GPU only (where the cuda:0 runs fail, against a libcuda stub,
# and are reported as such); it has not yet been run on a GPU. The tolerances below are first guesses:
# CUDA computes the LLM in bf16 (src/device.rs) while the CPU uses f32, so expect differences of bf16 size.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${MLVF:-dist/mlvf}}
WORK=${GPU_CHECK_DIR:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$WORK"
case "$BIN" in
    *.gz) gzip -dc "$BIN" > "$WORK/mlvf" ;;
    *.xz) xz -dc "$BIN" > "$WORK/mlvf" ;;
    *.zst) zstd -qdc "$BIN" -o "$WORK/mlvf" ;;
    *) cp "$BIN" "$WORK/mlvf" ;;
esac || { echo "cannot read the binary $BIN"; exit 2; }
chmod +x "$WORK/mlvf"
M=$WORK/mlvf

echo "== machine"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -4
else
    echo "no nvidia-smi"
fi

# CUDA user-space libraries: every folder with one of the wanted libraries is added (cu13 wheels keep all of
# them in nvidia/cu13/lib, older wheels one folder per package).
dirs=()
LP=""
for d in ${CUDA_LIBS:-}; do LP=${LP:+$LP:}$d; done   # taken as given
if command -v python3 >/dev/null; then
    while IFS= read -r d; do dirs+=("$d"); done < <(python3 - <<'EOF' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
for r in roots:
    for lib in sorted(glob.glob(os.path.join(r, "*", "lib"))):
        print(lib)
EOF
)
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
done
for d in "${dirs[@]}"; do
    case ":$LP:" in *":$d:"*) continue ;; esac
    if ls "$d"/lib{cudart,cublas,cublasLt,nvrtc}.so.13 "$d"/libcurand.so.10 2>/dev/null | grep -q .; then
        LP=${LP:+$LP:}$d
    fi
done
export LD_LIBRARY_PATH=${LP}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if ldd "$M" | grep 'not found'; then
    echo "the binary cannot start: the libraries above were not found (set CUDA_LIBS to their folder)"
    exit 3
fi
ldd "$M" | grep -E 'cuda|cublas|curand|nvrtc'

# compare.py A B KIND: max |Δ| over all tensors of two safetensors files (f32/u32 only, no numpy needed).
cat > "$WORK/compare.py" <<'EOF'
import json, struct, sys
from array import array

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = array({"F32": "f", "U32": "I", "I64": "q"}[t["dtype"]])
        arr.frombytes(data[a:b])
        out[name] = (t["shape"], arr)
    return out

ref, got = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3])
worst, ok = 0.0, True
for name in sorted(ref):
    shape, r = ref[name]
    if name not in got or got[name][0] != shape:
        print(f"  {name}: missing or shape {got.get(name, [None])[0]} != {shape}")
        ok = False
        continue
    g = got[name][1]
    d = max((abs(x - y) for x, y in zip(r, g)), default=0.0)
    scale = max((abs(x) for x in r), default=0.0) or 1.0
    line = f"  {name:18} {str(shape):14} max|Δ| {d:.3e}  max|ref| {scale:.3e}  rel {d / scale:.2e}"
    if name == "logits" and len(shape) == 2:
        rows, cols = shape
        top = lambda v, i: max(range(cols), key=lambda j: v[i * cols + j])
        agree = sum(top(r, i) == top(g, i) for i in range(rows))
        line += f"  top-1 {agree}/{rows}"
    print(line)
    worst = max(worst, d / scale)
    ok = ok and d / scale <= tol
print(f"  => worst rel {worst:.2e} (tolerance {tol:g}): {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF

summary=()
record() { summary+=("$(printf '%-6s %-32s %.150s' "$1" "$2" "$3")"); }
run() { # name, log, command...: runs, times, keeps stderr
    local name=$1 log=$2; shift 2
    local t0=$(date +%s.%N)
    "$@" > "$log" 2>&1
    local rc=$?
    local t=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')" 2>/dev/null || echo "?")
    echo "  $name: rc=$rc ${t}s"
    [ $rc -eq 0 ] || sed 's/^/    | /' "$log" | tail -8
    return $rc
}

echo "== LLM fixtures (inspect llm: CPU f32 vs cuda:0 bf16)"
for dir in tests/fixtures/llm/*/; do
    f=$(basename "$dir")
    cpu=$WORK/llm-$f-cpu.safetensors gpu=$WORK/llm-$f-cuda.safetensors
    run "$f cpu" "$WORK/llm-$f-cpu.log" "$M" inspect llm --model "$dir" --prompt "a red square" --out "$cpu" --device cpu ||
        { record FAIL "llm $f" "cpu run failed"; continue; }
    run "$f cuda:0" "$WORK/llm-$f-cuda.log" "$M" inspect llm --model "$dir" --prompt "a red square" --out "$gpu" --device cuda:0 ||
        { record FAIL "llm $f" "cuda:0 run failed: $(grep -m1 -iE 'error|panick' "$WORK/llm-$f-cuda.log")"; continue; }
    if python3 "$WORK/compare.py" "$cpu" "$gpu" 5e-2; then record PASS "llm $f" ""; else record FAIL "llm $f" "logits differ"; fi
done

echo "== vision fixtures (inspect vision: CPU f32 vs cuda:0 f32 and bf16)"
for dir in tests/fixtures/vision/*/; do
    [ -f "$dir/config.json" ] || continue
    f=$(basename "$dir")
    cpu=$WORK/vis-$f-cpu.safetensors
    run "$f cpu" "$WORK/vis-$f-cpu.log" "$M" inspect vision --model "$dir" --image tests/fixtures/vision/chelsea.png --out "$cpu" --device cpu ||
        { record FAIL "vision $f" "cpu run failed"; continue; }
    for dt in f32 bf16; do
        gpu=$WORK/vis-$f-cuda-$dt.safetensors
        tol=$([ $dt = f32 ] && echo 1e-3 || echo 5e-2)
        run "$f cuda:0 $dt" "$WORK/vis-$f-cuda-$dt.log" "$M" inspect vision --model "$dir" --image tests/fixtures/vision/chelsea.png \
            --out "$gpu" --device cuda:0 --dtype $dt ||
            { record FAIL "vision $f $dt" "cuda:0 run failed: $(grep -m1 -iE 'error|panick' "$WORK/vis-$f-cuda-$dt.log")"; continue; }
        if python3 "$WORK/compare.py" "$cpu" "$gpu" "$tol"; then record PASS "vision $f $dt" ""; else record FAIL "vision $f $dt" "hidden states differ"; fi
    done
done

echo "== summary (outputs and logs in $WORK)"
printf '%s\n' "${summary[@]}"
fails=$(printf '%s\n' "${summary[@]}" | grep -c '^FAIL')
echo "$(( ${#summary[@]} - fails )) passed, $fails failed"
[ "$fails" -eq 0 ]
