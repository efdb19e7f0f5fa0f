"""The demo chain on the built-in corpus: vatt sample-data -> vatt preprocess -> webdataset read."""

import json
import subprocess

import pytest
import webdataset as wds
from conftest import ROOT, VATT

from preprocessing.config import PreprocessConfig
from preprocessing.jobs import run_preprocess
from preprocessing.shard_format import decode_sample, list_shards

pytestmark = pytest.mark.slow


def test_sample_corpus_round_trip(tmp_path, ray_local):
    corpus = tmp_path / "corpus"
    subprocess.run(
        [
            *VATT,
            "sample-data",
            str(corpus),
            "--videos",
            "2",
            "--audioset-clips",
            "2",
            "--msrvtt-videos",
            "0",
            "--seed",
            "3",
            "--no-progress",
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    topics = json.loads((corpus / "topics.json").read_text())
    captions = json.loads((corpus / "howto100m" / "caption.json").read_text())
    howto = PreprocessConfig(
        source="howto100m",
        videos=str(corpus / "howto100m" / "videos"),
        captions=str(corpus / "howto100m" / "caption.json"),
        out=str(tmp_path / "howto"),
        short_side=96,
    )
    audio = PreprocessConfig(
        source="audioset",
        videos=str(corpus / "audioset" / "videos"),
        segments=str(corpus / "audioset" / "segments.csv"),
        out=str(tmp_path / "audioset"),
        short_side=96,
    )
    s1 = run_preprocess(howto, show_progress=False)
    s2 = run_preprocess(audio, show_progress=False)
    assert s1["errors"] == 0 and s2["errors"] == 0
    # Captions are >= 2.5 s apart, so every caption anchors one window.
    assert s1["samples_written"] == sum(len(v["text"]) for v in captions.values())
    assert s2["samples_written"] == 2 * 2
    samples = [
        decode_sample(s)
        for s in wds.WebDataset(list_shards(howto.out) + list_shards(audio.out), shardshuffle=False)
    ]
    howto_samples = [s for s in samples if s["meta"]["source"] == "howto100m"]
    # The speech that generated each caption is heard in the caption's own window.
    ratios = sorted(s["meta"]["speech_ratio"] for s in howto_samples)
    assert ratios[len(ratios) // 2] > 0.3
    assert sum(s["meta"]["text_mask"] for s in howto_samples) >= 0.8 * len(howto_samples)
    for s in howto_samples:
        anchor = s["meta"]["captions"][0]
        assert s["meta"]["start"] <= (anchor["start"] + anchor["end"]) / 2 <= s["meta"]["end"]
        assert s["meta"]["video_id"] in topics["files"]["howto100m"]
    assert all(
        s["meta"]["text_mask"] == 0 and s["meta"]["labels"]
        for s in samples
        if s["meta"]["source"] == "audioset"
    )
    tokens = json.loads((tmp_path / "howto" / "tokenizer.json").read_text())["model"]["vocab"]
    words = {w for v in captions.values() for t in v["text"] for w in t.lower().split()}
    assert words <= set(tokens)
