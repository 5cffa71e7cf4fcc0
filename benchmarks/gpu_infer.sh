#!/usr/bin/env bash
# Inference section of the GPU benchmarks (callable from benchmarks/gpu.sh):
# OpenELM-270M generation at batch 1 vs the memory-bandwidth limit, then the
# decode breakdown. Random weights; nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. python benchmarks/gpu_infer.py --prompt-len 128 --gen-len 256 "$@"
