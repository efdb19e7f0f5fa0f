#!/usr/bin/env bash
# make sweep-demo: a 3-trial Ray Tune sweep (ASHA) of the debug preset on the demo shards, then
# a training run of the best configuration it exports. Builds the demo shards first if needed.
set -euo pipefail
OUT=${1:-demo_out}
VATT=".venv/bin/vatt"
t0=$SECONDS
if [ ! -d "$OUT/shards/howto100m" ] || [ ! -d "$OUT/shards/audioset" ]; then
  echo "== no demo shards in $OUT: running make demo first"
  bash scripts/demo.sh "$OUT"
fi
# A fresh sweep every time (the same command on an existing sweep resumes it instead).
rm -rf "$OUT/sweeps/debug" "$OUT/runs/debug-best"
echo "== 1/2 sweep loss.lambda x loss.tau x model.droptoken_rate (3 trials, ASHA, R@10)"
$VATT tune --config debug storage="$OUT/sweeps" \
  train_overrides.storage="$OUT/runs" \
  train_overrides.data.howto100m="$OUT/shards/howto100m" \
  train_overrides.data.audioset="$OUT/shards/audioset" \
  train_overrides.eval.msrvtt_csv="$OUT/corpus/msrvtt/msrvtt_test.csv" \
  train_overrides.eval.msrvtt_videos="$OUT/corpus/msrvtt/videos"
echo "== 2/2 train the exported best configuration as is"
$VATT train --config "$OUT/sweeps/debug/best.yaml"
echo "sweep demo done in $((SECONDS - t0)) s: table $OUT/sweeps/debug/results.csv," \
  "plots $OUT/sweeps/debug/plots/, best config $OUT/sweeps/debug/best.yaml"
