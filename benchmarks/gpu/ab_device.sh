#!/bin/bash
# On the lent GPU, from the repo root: unpack the payload (parts already copied to /tmp/parts, see
# ../shared/gpu/README.md), convert the bundled GGUF, then run vllm_ab_bench.py with "$@".
# The lean_* import names map onto this checkout's folders through links (no install needed).
# usage: bash benchmarks/gpu/ab_device.sh --sections throughput,ttft --runs 5 --out "$OUT/ab.json"
set -o pipefail
export PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
OUTD=${OUT:-/tmp/out}; mkdir -p "$OUTD"
if [ ! -f /tmp/hf_smol/config.json ]; then
  bash .gpu/scripts/finish.sh none > "$OUTD/unpack.log" 2>&1
  [ -f /tmp/hf_smol/config.json ] || { tail -30 "$OUTD/unpack.log"; exit 2; }
fi
mkdir -p /tmp/lean_pkgs
ln -sfn "$PWD/backends" /tmp/lean_pkgs/lean_backends
ln -sfn "$PWD/benchmarks" /tmp/lean_pkgs/lean_benchmarks
export PYTHONPATH=/tmp/site_slim:/tmp/lean_pkgs:$PWD
timeout "${AB_TIMEOUT:-560}" python3 benchmarks/gpu/vllm_ab_bench.py --model /tmp/hf_smol "$@" > "$OUTD/ab_$$.log" 2>&1
rc=$?
grep -E "^\[ab\]|Traceback|Error|error:|max_num_seqs|Maximum concurrency|KV cache" "$OUTD/ab_$$.log" | cut -c1-300 | head -40
[ $rc -ne 0 ] && tail -60 "$OUTD/ab_$$.log" | cut -c1-400
exit $rc
