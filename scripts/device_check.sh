#!/usr/bin/env bash
# Issue 14's GPU checks on a lent GPU machine that has CUDA torch but neither Ray nor DeepSpeed
# (benchmarks/gpu_bench.py: MBS bf16 fed by the real loader, loader clips/s per core, the
# device-side augmentation), in one run.
#
# Needs, in CARRY (default .devcarry, ignored by git, named in the device tool's `carry`):
#   whl/     cp312 manylinux wheels of what the machine lacks (av, webdataset, braceexpand)
#   shards/  what `benchmarks/gpu_bench.py --prepare .devcarry/shards` wrote here
# Writes $OUT/gpu_bench.json and $OUT/log.txt (OUT defaults to bench_out/device).
# Extra arguments go to gpu_bench.py; here, on CPU: SKIP_INSTALL=1 PY=.venv/bin/python
#   scripts/device_check.sh --device cpu --tiny
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out/device}
CARRY=${CARRY:-.devcarry}
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv 2>/dev/null || echo "no nvidia-smi"
    echo "cpus $(nproc)"
    lscpu 2>/dev/null | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|CPU max)"
    free -g | head -2
    df -h /dev/shm | tail -1
    # DataLoader workers hand batches over in /dev/shm: 15 workers x 2 prefetched batches x
    # 64 clips x 4.8 MB is ~9 GB. Grow a small one on the GPU machine (root only).
    shm_kb=$(df -k --output=size /dev/shm 2>/dev/null | tail -1)
    if [ "${shm_kb:-0}" -lt $((16 * 1024 * 1024)) ] && [ "$(id -u)" = 0 ] \
        && command -v nvidia-smi >/dev/null; then
        mount -o remount,size=48G /dev/shm && df -h /dev/shm | tail -1
    fi
    if [ -z "${SKIP_INSTALL:-}" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$CARRY"/whl/*.whl || exit 1
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    fi
    du -sh "$CARRY"/shards/* 2>/dev/null
    dmon=""
    if command -v nvidia-smi >/dev/null; then  # GPU load and clocks, once a second
        nvidia-smi dmon -s puc -d 1 >"$OUT/dmon.txt" 2>&1 &
        dmon=$!
    fi
    timeout "${BENCH_TIMEOUT:-330}" "$PY" benchmarks/gpu_bench.py --shards "$CARRY/shards" \
        --json "$OUT/gpu_bench.json" "$@"
    rc=$?
    echo "gpu_bench.py exit $rc"
    [ -n "$dmon" ] && kill "$dmon"
    nvidia-smi --query-gpu=memory.used,clocks.sm,temperature.gpu,power.draw \
        --format=csv 2>/dev/null || true
    date -u
    exit $rc
} 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
