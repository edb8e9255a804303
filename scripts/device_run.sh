#!/usr/bin/env bash
# One device's whole check, with the machine's installed torch (no set-up): the full profile (parity, the
# cross-device stages against cpu, determinism, invalid inputs), the gpu profile, and torch's cross_entropy
# throughput beside the bandwidth floor. Everything lands in OUT_DIR: each step's log and report folder (its run's
# summary.md, junit.xml and failure records under <step>/runs/<run-id>/), environment.txt and times.txt (each step's
# exit status and wall time).
#
#   scripts/device_run.sh [DEVICE [OUT_DIR]]        # defaults: cuda, reports/device-DEVICE
#
# Each step has its own time limit (FULL_S, LLM_S, GPU_S, BENCH_S seconds), so a slow step cannot hide the others;
# STEPS picks steps (default: "full gpu-llm gpu throughput"), LLM_K the gpu-llm step's cases (a pytest -k).
set -u
DEVICE=${1:-cuda}
OUT_DIR=${2:-reports/device-$DEVICE}
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

{
  date -u
  "$PY" -c "import torch, numpy, sys, platform
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)
print('cpu', platform.processor() or platform.machine(), 'cores', __import__('os').cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('gpu', p.name, round(p.total_memory / 2**30, 1), 'GiB', p.multi_processor_count, 'SMs')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
} > "$OUT_DIR/environment.txt" 2>&1

STEPS=${STEPS:-full gpu-llm gpu throughput}
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 start rc
  shift 2
  case " $STEPS " in *" $name "*) ;; *) return ;; esac
  start=$(date +%s)
  timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc, $(($(date +%s) - start)) s" | tee -a "$OUT_DIR/times.txt"
  tail -n 3 "$OUT_DIR/$name.log"
  # A step stopped at its limit left its run's folder without run.json: render what its result lines hold.
  for run in "$OUT_DIR/$name"/runs/*/; do
    if [ -d "$run" ] && [ ! -f "$run/run.json" ]; then
      "$PY" -m parity_tests.report "$run"
    fi
  done
}

pytest_args=(-p no:cacheprovider -q -rsfE --device "$DEVICE")
step full "${FULL_S:-240}" "$PY" -m pytest parity_tests/test_parity.py parity_tests/test_determinism.py \
  parity_tests/test_invalid_inputs.py --profile full -n "$JOBS" --report-dir="$OUT_DIR/full" "${pytest_args[@]}"
# The gpu profile: the billion-logit cases one at a time (each holds tens of GB of host memory), then the rest.
step gpu-llm "${LLM_S:-160}" "$PY" -m pytest parity_tests/test_parity.py --profile gpu -k "${LLM_K:-8192x128256}" \
  --durations=0 --report-dir="$OUT_DIR/gpu-llm" "${pytest_args[@]}"
step gpu "${GPU_S:-120}" "$PY" -m pytest parity_tests/test_parity.py --profile gpu -k "not 8192x128256" -n 4 \
  --durations=0 --report-dir="$OUT_DIR/gpu" "${pytest_args[@]}"
if [ "$DEVICE" = cuda ]; then
  step throughput "${BENCH_S:-60}" "$PY" -m benchmarks.device_throughput --device cuda
fi
