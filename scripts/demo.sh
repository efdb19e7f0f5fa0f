#!/usr/bin/env bash
# make demo: the built-in sample corpus through the whole chain: corpus -> shards -> Ray Train
# + DeepSpeed pretraining (debug preset, 2 CPU workers, ZeRO-2) -> held-out retrieval report
# -> evaluation of the trained model (zero-shot retrieval, linear probes, zero-shot
# classification from class names) against an untrained one -> fine-tuning its video and audio
# towers on the labelled sample sets.
set -euo pipefail
OUT=${1:-demo_out}
VATT=".venv/bin/vatt"
t0=$SECONDS
echo "== 1/8 sample corpus -> $OUT/corpus"
# --reuse: a re-run keeps a finished corpus; preprocess resumes its finished shards.
$VATT sample-data "$OUT/corpus" --reuse
echo "== 2/8 preprocess HowTo100M-style videos -> $OUT/shards/howto100m"
$VATT preprocess howto100m --videos "$OUT/corpus/howto100m/videos" \
  --captions "$OUT/corpus/howto100m/caption.json" --out "$OUT/shards/howto100m"
echo "== 3/8 preprocess AudioSet-style clips -> $OUT/shards/audioset"
$VATT preprocess audioset --videos "$OUT/corpus/audioset/videos" \
  --segments "$OUT/corpus/audioset/segments.csv" --out "$OUT/shards/audioset"
echo "== 4/8 inspect"
$VATT inspect "$OUT/shards/howto100m" --limit 3 --contact-sheet "$OUT/howto100m_contact_sheet.png"
$VATT inspect "$OUT/shards/audioset" --limit 2 --contact-sheet "$OUT/audioset_contact_sheet.png"
echo "== 5/8 pretrain the debug preset (Ray Train, 2 workers, DeepSpeed ZeRO-2 on CPU)"
# A fresh run every time: the demo shows training from scratch, not a resume.
rm -rf "$OUT/runs/debug"
$VATT train --config debug storage="$OUT/runs" \
  data.howto100m="$OUT/shards/howto100m" data.audioset="$OUT/shards/audioset" \
  eval.msrvtt_csv="$OUT/corpus/msrvtt/msrvtt_test.csv" eval.msrvtt_videos="$OUT/corpus/msrvtt/videos"
echo "== 6/8 evaluate: zero-shot retrieval (MSR-VTT, YouCook2), linear probes (UCF101, ESC-50)"
C="$OUT/corpus"
$VATT eval retrieval --model "$OUT/runs/debug" --compare-untrained --benchmark msrvtt \
  --csv "$C/msrvtt/msrvtt_test.csv" --videos "$C/msrvtt/videos" --out "$OUT/eval/msrvtt"
$VATT eval retrieval --model "$OUT/runs/debug" --compare-untrained --benchmark youcook2 \
  --csv "$C/youcook2/youcookii_val.csv" --videos "$C/youcook2/videos" --out "$OUT/eval/youcook2"
$VATT eval linear-probe --model "$OUT/runs/debug" --compare-untrained --dataset ucf101 \
  --splits-dir "$C/ucf101/splits" --videos "$C/ucf101/videos" --out "$OUT/eval/ucf101"
$VATT eval linear-probe --model "$OUT/runs/debug" --compare-untrained --dataset esc50 \
  --esc50-csv "$C/esc50/meta/esc50.csv" --audio "$C/esc50/audio" --out "$OUT/eval/esc50"
echo "== 7/8 zero-shot classification from class names (UCF101-, Kinetics-, ESC-50-style sets)"
# Prompts in the words of the captions (ASR lines): the sample corpus's vocabulary.
ZS=(--model "$OUT/runs/debug" --compare-untrained --templates asr)
$VATT eval zero-shot "${ZS[@]}" --dataset ucf101 --splits-dir "$C/ucf101/splits" \
  --videos "$C/ucf101/videos" --out "$OUT/eval/zero-shot-ucf101"
$VATT eval zero-shot "${ZS[@]}" --dataset kinetics --videos "$C/kinetics/videos" \
  --kinetics-csv "$C/kinetics/annotations/validate.csv" \
  --kinetics-train-csv "$C/kinetics/annotations/train.csv" --out "$OUT/eval/zero-shot-kinetics"
$VATT eval zero-shot "${ZS[@]}" --dataset esc50 --esc50-csv "$C/esc50/meta/esc50.csv" \
  --audio "$C/esc50/audio" --out "$OUT/eval/zero-shot-esc50"
echo "== 8/8 fine-tune the pretrained towers (Ray Train): UCF101-style video, ESC-50-style audio"
rm -rf "$OUT/runs/finetune-debug-video" "$OUT/runs/finetune-debug-audio"
$VATT finetune --config debug-video init="$OUT/runs/debug" storage="$OUT/runs" \
  data.ucf101_splits="$C/ucf101/splits" data.ucf101_videos="$C/ucf101/videos"
$VATT finetune --config debug-audio init="$OUT/runs/debug" storage="$OUT/runs" \
  data.esc50_csv="$C/esc50/meta/esc50.csv" data.esc50_audio="$C/esc50/audio"
.venv/bin/python scripts/demo_report.py "$OUT/runs/debug" "$OUT/report.json" "$OUT/eval"
echo "demo done in $((SECONDS - t0)) s: report $OUT/report.json, plots $OUT/runs/debug/plots/ $OUT/eval/*/"
