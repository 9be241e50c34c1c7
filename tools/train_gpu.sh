#!/usr/bin/env bash
# Train config.yaml's ensemble (the paper's x4 SRGAN, K = 3) at full speed on one CUDA GPU, in one command:
#
#     bash tools/train_gpu.sh                         # config.yaml, run folder runs/x4-gpu-<time>
#     CONFIG=config_scaled_x4.yaml NAME=x4-try bash tools/train_gpu.sh --set train.pretrain_steps=20000
#
# What "full speed" means here: bf16 autocast (runtime.amp auto picks bf16 on cards that have it, fp16 with a
# GradScaler on older ones), channels_last convolutions (cuDNN's fast NHWC kernels), and enough DataLoader workers
# to keep the card fed (one per CPU core, at most 8; patches are cut from images cached in memory). Extra arguments
# go to train.py (e.g. --set train.members=5, --resume runs/NAME).
#
# The run folder gets, besides the checkpoints and log.jsonl (whose "train" events carry steps_per_s):
#   gpu_utilisation.csv  nvidia-smi every 30 s: card, utilisation %, memory
# and the script ends with a summary line: median steps/s per phase and mean GPU utilisation.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-config.yaml}
NAME=${NAME:-$(basename "$CONFIG" .yaml)-gpu-$(date +%Y%m%d-%H%M%S)}
CORES=$(nproc)
WORKERS=${WORKERS:-$(( CORES > 8 ? 8 : CORES ))}
RUN_DIR=runs/$NAME

python - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("error: tools/train_gpu.sh needs a CUDA GPU (torch.cuda.is_available() is False); "
             "on a CPU run `python train.py --config config_scaled.yaml` instead")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

mkdir -p "$RUN_DIR"
SMI_PID=""
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,name,utilization.gpu,memory.used,memory.total --format=csv -l 30 \
        > "$RUN_DIR/gpu_utilisation.csv" &
    SMI_PID=$!
fi
trap '[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null || true' EXIT

python train.py --config "$CONFIG" --name "$NAME" --device cuda \
    --set runtime.amp=auto --set runtime.channels_last=true --set "data.num_workers=$WORKERS" "$@"

python - "$RUN_DIR" <<'EOF'
import csv, json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
rates = {}
for line in (run / "log.jsonl").read_text().splitlines():
    event = json.loads(line)
    if event.get("event") == "train" and "steps_per_s" in event:
        rates.setdefault(event.get("phase", "?"), []).append(event["steps_per_s"])
parts = [f"{phase} {statistics.median(values):.2f} steps/s" for phase, values in rates.items()]
util_file = run / "gpu_utilisation.csv"
if util_file.is_file():
    rows = list(csv.reader(util_file.read_text().splitlines()))[1:]
    utils = [float(r[2].strip().split()[0]) for r in rows if len(r) > 2 and r[2].strip().split()[0].isdigit()]
    if utils:
        parts.append(f"GPU utilisation mean {statistics.mean(utils):.0f}% ({rows[0][1].strip()})")
print(f"{run}: " + "; ".join(parts))
EOF
