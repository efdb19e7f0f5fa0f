#!/usr/bin/env bash
# make demo-alpro: ALPRO's two stages on the WebVid-style sample set (single-topic clips and
# two-topic side-by-side clips): sample set -> shards (train, val) -> the VTC prompter -> the
# full model (VTC + VTM + MLM + PEM from the frozen prompter) -> report.json, trained vs
# untrained, exit 1 unless the thresholds hold (docs/alpro.md).
set -euo pipefail
OUT=${1:-demo_out}/alpro
VATT=".venv/bin/vatt"
# This checkout's code, whichever checkout the virtual environment was installed from.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
t0=$SECONDS
echo "== 1/5 WebVid-style sample set -> $OUT/corpus"
$VATT sample-data "$OUT/corpus" --reuse --no-progress --videos 0 --audioset-clips 0 \
  --msrvtt-videos 0 --ucf101-groups 0 --esc50-clips-per-class 0 --youcook2-videos 0 \
  --kinetics-clips-per-class 0 --webvid-clips "${WEBVID_CLIPS:-96}" --webvid-pairs "${WEBVID_PAIRS:-64}"
echo "== 2/5 preprocess webvid (train, val) -> $OUT/shards"
W="$OUT/corpus/webvid"
$VATT preprocess webvid --videos "$W/videos" --csv "$W/results_train.csv" --out "$OUT/shards/webvid"
$VATT preprocess webvid --videos "$W/videos" --csv "$W/results_val.csv" --out "$OUT/shards/webvid_val"
# A fresh pair of runs every time: the demo shows training from scratch, not a resume.
rm -rf "$OUT/runs/alpro-prompter-debug" "$OUT/runs/alpro-debug"
echo "== 3/5 stage 1: the VTC prompter (Ray Train, 2 workers, DeepSpeed ZeRO-2 on CPU)"
$VATT train --config alpro-prompter-debug storage="$OUT/runs" data.webvid="$OUT/shards/webvid"
echo "== 4/5 stage 2: ALPRO with PEM from the frozen prompter"
$VATT train --config alpro-debug storage="$OUT/runs" data.webvid="$OUT/shards/webvid" \
  alpro.prompter="$OUT/runs/alpro-prompter-debug"
echo "== 5/5 report: trained vs untrained on the held-out clips"
status=0
.venv/bin/python scripts/alpro_report.py "$OUT/corpus" "$OUT/shards/webvid_val" \
  "$OUT/runs/alpro-prompter-debug" "$OUT/runs/alpro-debug" "$OUT/report.json" || status=$?
echo "demo-alpro done in $((SECONDS - t0)) s: report $OUT/report.json (exit $status)"
exit $status
