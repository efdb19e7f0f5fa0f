#!/usr/bin/env bash
# make demo: the built-in sample corpus through the whole chain: corpus -> shards -> Ray Train
# + DeepSpeed pretraining (debug preset, 2 CPU workers, ZeRO-2) -> held-out retrieval report.
set -euo pipefail
OUT=${1:-demo_out}
VATT=".venv/bin/vatt"
t0=$SECONDS
echo "== 1/5 sample corpus -> $OUT/corpus"
$VATT sample-data "$OUT/corpus"
echo "== 2/5 preprocess HowTo100M-style videos -> $OUT/shards/howto100m"
$VATT preprocess howto100m --videos "$OUT/corpus/howto100m/videos" \
  --captions "$OUT/corpus/howto100m/caption.json" --out "$OUT/shards/howto100m"
echo "== 3/5 preprocess AudioSet-style clips -> $OUT/shards/audioset"
$VATT preprocess audioset --videos "$OUT/corpus/audioset/videos" \
  --segments "$OUT/corpus/audioset/segments.csv" --out "$OUT/shards/audioset"
echo "== 4/5 inspect"
$VATT inspect "$OUT/shards/howto100m" --limit 3 --contact-sheet "$OUT/howto100m_contact_sheet.png"
$VATT inspect "$OUT/shards/audioset" --limit 2 --contact-sheet "$OUT/audioset_contact_sheet.png"
echo "== 5/5 pretrain the debug preset (Ray Train, 2 workers, DeepSpeed ZeRO-2 on CPU)"
# A fresh run every time: the demo shows training from scratch, not a resume.
rm -rf "$OUT/runs/debug"
$VATT train --config debug storage="$OUT/runs" \
  data.howto100m="$OUT/shards/howto100m" data.audioset="$OUT/shards/audioset" \
  eval.msrvtt_csv="$OUT/corpus/msrvtt/msrvtt_test.csv" eval.msrvtt_videos="$OUT/corpus/msrvtt/videos"
.venv/bin/python scripts/demo_report.py "$OUT/runs/debug" "$OUT/report.json"
echo "demo done in $((SECONDS - t0)) s: report $OUT/report.json, plots $OUT/runs/debug/plots/"
