#!/usr/bin/env bash
# The GPU check: everything in bcvlm that needs a GPU, run once, printed as one JSON object on stdout.
#
#   benchmarks/gpu_check.sh               # on a CUDA machine: 2048x1024, bf16
#   benchmarks/gpu_check.sh --cpu-smoke   # the same steps at tiny size on CPU (run by `make test`, so it never rots)
#   benchmarks/gpu_check.sh --out gpu_check.json
#
# Steps (each one's JSON under its key; a failed step is recorded with its exit code and log tail, and the script
# then exits 1, so a failure is never reported as success):
#   model_step            train step VLM vs image-only, and the DP (Opacus) step vs the same trainable set without DP
#   inference_latency     one 4-view exam: VLM vs image-only
#   simulation            `bcvlm simulate`: 2 rounds, 2 virtual sites, DP + SecAgg+, sites on CUDA with bf16
#   frozen_feature_cache  DP epoch time with and without the frozen-feature cache
# Progress goes to stderr; set PYTHON to choose the interpreter (default: the repository's .venv, else python3).
# --cpu-smoke runs the simulation step alongside the three others (their timings are not figures there, and one
# step at a time leaves a core idle: most of a smoke step is a single-threaded interpreter importing torch).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
OUT=""
KEEP=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-smoke) MODE=cpu-smoke ;;
    --out) OUT="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --cpu-smoke, --out FILE, --keep)" >&2; exit 2 ;;
  esac
  shift
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bcvlm-gpu-check.XXXXXX")"
if [[ -z "$KEEP" ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "gpu_check: keeping $WORK" >&2; fi

if [[ "$MODE" == gpu ]]; then
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: no CUDA device visible to torch; use --cpu-smoke for the CPU rehearsal" >&2
    exit 3
  fi
  DEVICE=cuda; HEIGHT=2048; WIDTH=1024; BATCH=2; STEPS=5; WARMUP=2; REPEATS=5; RECORDS=32
  SIM_SIZE=(cohort.synth.n_patients=16 cohort.synth.workers=4 resources.num_gpus_per_site=0.5
            resources.ray_num_gpus=1 resources.ray_num_cpus=0 resources.num_cpus_per_site=2
            server.model.text_encoder.num_layers=0 server.model.fusion.dim=256 server.model.fusion.heads=8
            server.model.image_encoder.trainable_stages=2 server.model.dropout=0.1 server.text.max_length=64)
  CACHE_ARGS=(--records "$RECORDS" --batch 8 --epochs 2)
else
  DEVICE=cpu; HEIGHT=64; WIDTH=32; BATCH=1; STEPS=1; WARMUP=0; REPEATS=1; RECORDS=4
  SIM_SIZE=(resources.ray_num_cpus=2 bootstrap_resamples=100)
  CACHE_ARGS=(--records "$RECORDS" --batch 2 --epochs 2 --tiny --threads 1)
fi

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
run_step() {  # run_step NAME COMMAND... : stdout's last JSON document -> $WORK/NAME.json, log -> $WORK/NAME.log
  local name="$1"; shift
  echo "gpu_check: $name ..." >&2
  local started=$SECONDS
  if "$@" >"$WORK/$name.out" 2>"$WORK/$name.log"; then
    echo "gpu_check: $name done in $((SECONDS - started)) s" >&2
  else
    local code=$?
    echo "gpu_check: $name FAILED (exit $code); log tail:" >&2
    tail -n 30 "$WORK/$name.log" >&2
    echo "$code" >"$WORK/$name.failed"
  fi
  echo $((SECONDS - started)) >"$WORK/$name.seconds"
}

# GPU: one step at a time, so that each step's timings are its own. CPU smoke: the simulation (the longest step)
# in the background while the others run one after the other; each step still writes only its own files.
simulation_step() {  # `bcvlm simulate`: 2 rounds, 2 virtual sites, DP + SecAgg+
  run_step simulation "$PYTHON" -c "from bcvlm_model.cli import main; raise SystemExit(main())" simulate \
    --config-name tiny "run_dir=$WORK/simulation" progress=false server.rounds=2 cohort.synth.n_sites=2 \
    cohort.synth.height="$HEIGHT" cohort.synth.width="$WIDTH" server.preprocess.image_height="$HEIGHT" \
    server.preprocess.image_width="$WIDTH" site.compute.device="$DEVICE" site.compute.bf16=true \
    baselines.centralized=false baselines.local_only=false baselines.image_only=false baselines.no_site_fields=false pretrain.enabled=false \
    "${SIM_SIZE[@]}"
}
SIM_PID=""
if [[ "$MODE" == cpu-smoke ]]; then
  simulation_step &
  SIM_PID=$!
fi

run_step model_step "$PYTHON" "$ROOT/benchmarks/model_step.py" --height "$HEIGHT" --width "$WIDTH" --batch "$BATCH" \
  --device "$DEVICE" --bf16 --steps "$STEPS" --warmup "$WARMUP" --models vlm,image_only --out "$WORK/model_step.json"

run_step inference_latency "$PYTHON" "$ROOT/benchmarks/inference_latency.py" --size "${HEIGHT}x${WIDTH}" \
  --device "$DEVICE" --repeats "$REPEATS" --warmup 1

if [[ "$MODE" == gpu ]]; then simulation_step; fi

run_step frozen_feature_cache "$PYTHON" "$ROOT/benchmarks/frozen_feature_cache.py" --sizes "${HEIGHT}x${WIDTH}" \
  --device "$DEVICE" --bf16 "${CACHE_ARGS[@]}" --out "$WORK/frozen_feature_cache.json"
if [[ -n "$SIM_PID" ]]; then wait "$SIM_PID"; fi

"$PYTHON" - "$WORK" "$MODE" "$DEVICE" "$LOAD_BEFORE" "${OUT:-}" <<'PY'
"""Combine the steps' outputs into one JSON object on stdout (and --out)."""
import json
import os
import sys
from pathlib import Path

work, mode, device, load_before, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]


def last_json(text: str):
    """The last complete JSON object printed on stdout (benchmarks print one; progress lines come before)."""
    decoder = json.JSONDecoder()
    for start in [index for index, char in enumerate(text) if char == "{"]:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if not text[end:].strip():
            return value
    return None


def simulation_result(run_dir: Path):
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text())
    rounds = metrics.get("rounds", [])
    return {"rounds": [{key: entry.get(key) for key in ("round", "wall_time_s", "epsilon", "bytes_up", "bytes_down")}
                       for entry in rounds],
            "round_count": len(rounds)}


report = {"check": "bcvlm gpu_check", "mode": mode, "device": device, "load_average_before": load_before.split(), "steps": {}}
try:
    import torch
    report["torch"] = torch.__version__
    report["gpu"] = torch.cuda.get_device_name(0) if device == "cuda" else None
except Exception as exc:  # torch failing to import is itself a result worth printing
    report["torch"] = f"import failed: {exc}"
report["load_average_after"] = list(os.getloadavg())
report["cpu_count"] = os.cpu_count()
failed = []
for name in ("model_step", "inference_latency", "simulation", "frozen_feature_cache"):
    step = {"seconds": int((work / f"{name}.seconds").read_text()) if (work / f"{name}.seconds").is_file() else None}
    if name == "simulation":
        step["result"] = simulation_result(work / "simulation")
    elif (work / f"{name}.json").is_file():
        step["result"] = json.loads((work / f"{name}.json").read_text())
    else:
        step["result"] = last_json((work / f"{name}.out").read_text()) if (work / f"{name}.out").is_file() else None
    if (work / f"{name}.failed").is_file():
        step["ok"] = False
        step["exit_code"] = int((work / f"{name}.failed").read_text())
        step["log_tail"] = (work / f"{name}.log").read_text()[-3000:]
    elif step["result"] is None:
        step["ok"] = False
        step["error"] = "the step exited 0 but left no JSON result"
    else:
        step["ok"] = True
    if name == "simulation" and step["ok"] and step["result"]["round_count"] != 2:
        step["ok"] = False
        step["error"] = f"expected 2 rounds, metrics.json has {step['result']['round_count']}"
    if not step["ok"]:
        failed.append(name)
    report["steps"][name] = step
report["ok"] = not failed
report["failed_steps"] = failed
text = json.dumps(report, indent=2)
print(text)
if out:
    Path(out).write_text(text + "\n")
sys.exit(1 if failed else 0)
PY
