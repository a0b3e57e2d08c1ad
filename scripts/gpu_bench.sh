#!/usr/bin/env bash
# The engine, miner and validator benchmarks on a CUDA machine, one JSON of results.
#
#   scripts/gpu_bench.sh [--out FILE] [--budget SECONDS] [--cpu] [--no-vllm] [--dry-run]
#
# Runs, in this order, each under its own time limit: the engine bench (transformers on CUDA,
# and vLLM when it imports), the miner bench (the HTTP layer over the zero-cost engine; then
# over transformers on CUDA, and vLLM when present), the validator bench (hf teacher on CUDA;
# then a vLLM teacher when present). Everything comes from what is installed here: the repo's
# virtualenv (or $PYTHON) and the tiny world's cache (~/.cache/distill-subnet; built here if
# missing, which takes a few minutes of CPU). No package registry is contacted.
#
# --budget (default 470 s, under 8 minutes) is shared: each step gets what is left, the vLLM
# steps are skipped when less than 100 s remain, and the JSON notes every skip and failure.
# --cpu runs the same sequence on the CPU with smaller sizes (what a machine without a GPU can
# check); --dry-run prints the steps without running them.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="gpu_bench.json"
BUDGET=470
DEVICE=cuda
DRY=0
WANT_VLLM=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --cpu) DEVICE=cpu; shift ;;
        --no-vllm) WANT_VLLM=0; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORK="$(mktemp -d -t gpu-bench-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

if ! "$PY" -c "import torch, transformers, subnet" 2>"$WORK/import.err"; then
    echo "gpu_bench.sh: $PY cannot import torch/transformers/subnet: $(tail -1 "$WORK/import.err")" >&2
    exit 2
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_bench.sh: no CUDA device visible to torch (run with --cpu for the CPU fallback)" >&2
    exit 2
fi
HAVE_VLLM=0
NO_VLLM="--no-vllm given"
if [ "$WANT_VLLM" = 1 ]; then
    NO_VLLM="vllm does not import here"
    if "$PY" -c "import vllm" >/dev/null 2>&1; then HAVE_VLLM=1; fi
fi
ENGINES=hf
[ "$HAVE_VLLM" = 1 ] && ENGINES=hf,vllm

if [ "$DEVICE" = cuda ]; then
    ENGINE_ARGS=(--batches 1,16,64 --repeats 3 --device cuda)
    MINER_ARGS=(--concurrency 1,8,32 --requests-per-worker 2 --requests-min 16 --max-tokens 32)
    ZERO_ARGS=(--concurrency 1,32,256)
    VALI_ARGS=(--miners 64,256 --steps 3 --device cuda)
else
    ENGINE_ARGS=(--batches 1,16 --repeats 2 --device cpu)
    MINER_ARGS=(--concurrency 1,8 --requests-per-worker 1 --requests-min 8 --max-tokens 16)
    ZERO_ARGS=(--concurrency 1,32 --quick)
    VALI_ARGS=(--miners 64 --steps 2 --device cpu)
fi

# name|needs vLLM|command (each writes $WORK/<name>.json)
STEPS=(
    "world|0|$PY -c 'from distill.tiny import build_tiny_world; print(build_tiny_world().teacher)'"
    "engine|0|$PY -m subnet.cli bench engine --engines $ENGINES ${ENGINE_ARGS[*]} --json $WORK/engine.json"
    "miner_zero|0|$PY -m subnet.cli bench miner --engine zero ${ZERO_ARGS[*]} --json $WORK/miner_zero.json"
    "miner_hf|0|$PY -m subnet.cli bench miner --engine hf ${MINER_ARGS[*]} --json $WORK/miner_hf.json"
    "validator_hf|0|$PY -m subnet.cli bench validator --engine hf ${VALI_ARGS[*]} --json $WORK/validator_hf.json"
    "miner_vllm|1|$PY -m subnet.cli bench miner --engine vllm ${MINER_ARGS[*]} --json $WORK/miner_vllm.json"
    "validator_vllm|1|$PY -m subnet.cli bench validator --engine vllm ${VALI_ARGS[*]} --json $WORK/validator_vllm.json"
)

: > "$WORK/status.txt"
for step in "${STEPS[@]}"; do
    name="${step%%|*}"; rest="${step#*|}"; vllm="${rest%%|*}"; cmd="${rest#*|}"
    if [ "$vllm" = 1 ] && [ "$HAVE_VLLM" = 0 ]; then
        echo "$name skipped: $NO_VLLM" >> "$WORK/status.txt"; continue
    fi
    remaining=$(left)
    if [ "$vllm" = 1 ] && [ "$remaining" -lt 100 ] || [ "$remaining" -lt 20 ]; then
        echo "$name skipped: budget, ${remaining}s left" >> "$WORK/status.txt"; continue
    fi
    if [ "$DRY" = 1 ]; then
        echo "[dry-run] $name (limit ${remaining}s): $cmd"
        echo "$name dry-run" >> "$WORK/status.txt"; continue
    fi
    echo "== $name (limit ${remaining}s)" >&2
    t0=$(date +%s)
    if timeout --kill-after=10 "$remaining" bash -c "$cmd" > "$WORK/$name.log" 2>&1; then
        echo "$name ok $(( $(date +%s) - t0 ))s" >> "$WORK/status.txt"
    else
        code=$?
        echo "$name failed exit $code after $(( $(date +%s) - t0 ))s" >> "$WORK/status.txt"
    fi
    tail -3 "$WORK/$name.log" >&2 || true
done

"$PY" - "$WORK" "$OUT" "$DEVICE" "$(( $(date +%s) - START ))" <<'EOF'
import json, platform, subprocess, sys
from pathlib import Path

work, out, device, seconds = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
machine = {"platform": platform.platform(), "python": platform.python_version(), "device": device}
try:
    import torch
    machine["torch"] = torch.__version__
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
        machine["cuda"] = torch.version.cuda
except Exception as e:  # the report must still be written
    machine["torch_error"] = str(e)
try:
    import vllm
    machine["vllm"] = vllm.__version__
except Exception:
    machine["vllm"] = None
try:
    machine["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=10,
    ).stdout.strip()
except Exception:
    pass
steps = {}
for line in (work / "status.txt").read_text().splitlines():
    name, _, status = line.partition(" ")
    entry = {"status": status}
    result = work / f"{name}.json"
    if result.is_file():
        entry["result"] = json.loads(result.read_text())
    log = work / f"{name}.log"
    if log.is_file() and not status.startswith("ok"):
        entry["log_tail"] = log.read_text()[-2000:]
    steps[name] = entry
out.write_text(json.dumps({"machine": machine, "seconds": seconds, "steps": steps}, indent=1))
print(f"wrote {out} ({seconds} s): " + ", ".join(f"{k} {v['status']}" for k, v in steps.items()))
EOF
