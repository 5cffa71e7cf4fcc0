#!/usr/bin/env bash
# The GPU benchmarks, one prepared run (under 5 minutes on one H200):
#   1. training MFU of OpenELM-270M and OpenELM-1.1B at seq 2048, bf16, cuDNN attention;
#   2. OpenELM-270M generation at batch 1 against the memory-bandwidth limit.
# The GPU image has jax (CUDA), flax, optax, orbax and sentencepiece but not ml-collections
# or grain: carry their wheels in .whl/ (see the device tool's notes); they are installed
# into /tmp/site here. Random weights; nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
timeout 200 python3 benchmarks/gpu_train.py --models 270m:16,1_1b:8 --seq 2048 --steps 5
timeout 80 bash benchmarks/gpu_infer.sh
