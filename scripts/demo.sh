#!/usr/bin/env bash
# make demo: the built-in sample corpus through the whole chain that exists so far.
set -euo pipefail
OUT=${1:-demo_out}
VATT=".venv/bin/vatt"
t0=$SECONDS
echo "== 1/4 sample corpus -> $OUT/corpus"
$VATT sample-data "$OUT/corpus"
echo "== 2/4 preprocess HowTo100M-style videos -> $OUT/shards/howto100m"
$VATT preprocess howto100m --videos "$OUT/corpus/howto100m/videos" \
  --captions "$OUT/corpus/howto100m/caption.json" --out "$OUT/shards/howto100m"
echo "== 3/4 preprocess AudioSet-style clips -> $OUT/shards/audioset"
$VATT preprocess audioset --videos "$OUT/corpus/audioset/videos" \
  --segments "$OUT/corpus/audioset/segments.csv" --out "$OUT/shards/audioset"
echo "== 4/4 inspect"
$VATT inspect "$OUT/shards/howto100m" --limit 5 --contact-sheet "$OUT/howto100m_contact_sheet.png"
$VATT inspect "$OUT/shards/audioset" --limit 3 --contact-sheet "$OUT/audioset_contact_sheet.png"
echo "demo done in $((SECONDS - t0)) s: shards in $OUT/shards, contact sheets in $OUT/*.png"
