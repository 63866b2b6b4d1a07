#!/bin/bash
# On the lent GPU, from the repo root: unpack the payload (parts already copied to /tmp/parts, see
# ../shared/gpu/README.md), convert the bundled GGUF, then run vllm_ab_bench.py with "$@".
# The lean_* import names map onto this checkout's folders through links (no install needed).
# usage: bash benchmarks/gpu/ab_device.sh --sections throughput,ttft --runs 5 --out "$OUT/ab.json"
#        bash benchmarks/gpu/ab_device.sh --model-shape 8b --memory-share 0.45 --out "$OUT/ab8b.json"
# AB_TIMEOUT (default 560): seconds for this whole script, unpacking included; the bench gets what
# is left. On a time-out its process group (engine processes included) is killed, so the GPU's
# memory is free for the next call; the JSON written so far stays (exit status 124).
set -o pipefail
export PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=${VLLM_USE_FLASHINFER_SAMPLER:-0}
OUTD=${OUT:-/tmp/out}; mkdir -p "$OUTD"
BUDGET=${AB_TIMEOUT:-560}
if [ ! -f /tmp/hf_smol/config.json ]; then
  bash .gpu/scripts/finish.sh none > "$OUTD/unpack.log" 2>&1
  [ -f /tmp/hf_smol/config.json ] || { tail -30 "$OUTD/unpack.log"; exit 2; }
fi
mkdir -p /tmp/lean_pkgs
ln -sfn "$PWD/backends" /tmp/lean_pkgs/lean_backends
ln -sfn "$PWD/benchmarks" /tmp/lean_pkgs/lean_benchmarks
export PYTHONPATH=/tmp/site_slim:/tmp/lean_pkgs:$PWD
LEFT=$((BUDGET - SECONDS)); [ "$LEFT" -gt 30 ] || { echo "no time left after unpacking ($SECONDS s)"; exit 124; }
echo "[ab.sh] unpacked in ${SECONDS}s; bench gets ${LEFT}s"
# setsid: the bench leads its own process group, so its engine processes can be found and ended.
rm -f /tmp/ab_bench.pgid
timeout -k 15 "$LEFT" setsid -w sh -c 'echo $$ > /tmp/ab_bench.pgid; exec python3 benchmarks/gpu/vllm_ab_bench.py --model /tmp/hf_smol "$@"' \
  ab "$@" > "$OUTD/ab_$$.log" 2>&1
rc=$?
kill -KILL -- "-$(cat /tmp/ab_bench.pgid)" 2>/dev/null  # leftovers of a killed run; nothing after a clean exit
grep -E "^\[ab\]|Traceback|Error|error:|max_num_seqs|Maximum concurrency|KV cache|took|Graph capturing|torch.compile" \
  "$OUTD/ab_$$.log" | cut -c1-300 | head -60
[ $rc -ne 0 ] && tail -60 "$OUTD/ab_$$.log" | cut -c1-400
exit $rc
