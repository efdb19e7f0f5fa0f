"""The preprocessing job for real: ffmpeg, a local Ray, tar shards read back by plain webdataset.

Covers the round trip, every bad-input kind, AudioSet segments, resume after kill -9, and the
CLI's exit codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import ROOT, VATT, ffmpeg, make_clip

from preprocessing.config import PreprocessConfig
from preprocessing.jobs import run_preprocess
from preprocessing.shard_format import decode_sample, list_shards

pytestmark = pytest.mark.slow

SPEECH = [
    "put the flour in the bowl",
    "mix it with two eggs",
    "bake it in the oven",
    "cut the warm bread",
]


def caption_entry(times):
    return {
        "start": [s for s, _ in times],
        "end": [e for _, e in times],
        "text": SPEECH[: len(times)],
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 good videos, one without audio, and one of every bad kind, with a caption.json."""
    d = tmp_path_factory.mktemp("howto")
    v = d / "videos"
    good_times = [(1.0, 2.5), (4.0, 5.5), (7.0, 8.5), (10.0, 11.5)]
    for i, size in enumerate(["320x240", "240x320", "426x240"]):
        make_clip(
            v / f"good{i}.mp4",
            13,
            size=size,
            rate=[25, 24, 30][i],
            audio="silence",
            speech=SPEECH[i],
            speech_at=4.2,
        )
    make_clip(v / "noaudio.mp4", 8, audio=None)
    src = (v / "good0.mp4").read_bytes()
    (v / "truncated.mp4").write_bytes(src[: len(src) * 3 // 10])
    (v / "empty.mp4").write_bytes(b"")
    (v / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(20000))
    make_clip(v / "short.mp4", 1.5)
    make_clip(d / "audioonly.m4a", 5)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(d / "audioonly.m4a"),
            "-vn",
            "-c:a",
            "copy",
            str(v / "audioonly.mp4"),
        ],
        check=True,
    )
    os.symlink(d / "does-not-exist.mp4", v / "dangling.mp4")
    captions = {f"good{i}": caption_entry(good_times) for i in range(3)}
    captions["good1"]["start"][0] = -0.5  # negative start: clamped, recorded
    captions["good2"]["text"][3] = "   "  # empty text: dropped, recorded
    captions["good2"]["start"].append(30.0)  # out of range: dropped, recorded
    captions["good2"]["end"].append(31.0)
    captions["good2"]["text"].append("after the end")
    for name in [
        "noaudio",
        "truncated",
        "empty",
        "garbage",
        "short",
        "audioonly",
        "dangling",
        "notonDisk",
    ]:
        captions[name] = caption_entry([(1.0, 2.0), (3.0, 4.0), (6.0, 7.5)])
    (d / "caption.json").write_text(json.dumps(captions))
    return d


def cfg_for(corpus: Path, out: Path, **kw) -> PreprocessConfig:
    return PreprocessConfig(
        source="howto100m",
        videos=str(corpus / "videos"),
        captions=str(corpus / "caption.json"),
        out=str(out),
        short_side=128,
        **kw,
    )


def preprocess_args(corpus: Path) -> list[str]:
    """`vatt preprocess howto100m` over the test corpus, without --out."""
    return [
        "preprocess",
        "howto100m",
        "--videos",
        str(corpus / "videos"),
        "--captions",
        str(corpus / "caption.json"),
    ]


def read_keys(out: Path) -> list[str]:
    return [
        s["__key__"]
        for s in wds.WebDataset(list_shards(str(out)), shardshuffle=False, empty_check=False)
    ]


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("out_full")
    summary = run_preprocess(cfg_for(corpus, out, samples_per_shard=3), show_progress=False)
    return out, summary


def test_round_trip_through_plain_webdataset(full_run):
    out, summary = full_run
    samples = [
        decode_sample(s)
        for s in wds.WebDataset(list_shards(str(out)), shardshuffle=False, empty_check=False)
    ]
    keys = [s["key"] for s in samples]
    assert len(keys) == len(set(keys)) == summary["samples_written"]
    by_video = {}
    for s in samples:
        by_video.setdefault(s["meta"]["video_id"], []).append(s)
    assert sorted(by_video) == ["good0", "good1", "good2", "noaudio"]
    assert len(by_video["good0"]) == 4  # one window per caption (midpoints 3 s apart)
    for s in samples:
        m = s["meta"]
        assert (
            s["video"].shape[0] == 40
            and s["video"].shape[3] == 3
            and min(s["video"].shape[1:3]) == 128
        )
        assert s["audio"].shape == (192000,) and s["audio"].dtype == np.int16
        assert m["end"] - m["start"] == pytest.approx(4.0)
        assert m["schema_version"] == 2 and m["fps"] == 10 and m["sample_rate"] == 48000
        assert (m["video_codec"], m["audio_codec"]) == ("h264", "opus")  # the defaults
        assert 1 <= len(m["captions"]) <= 5
    good0 = sorted(by_video["good0"], key=lambda s: s["meta"]["start"])
    # Captions nearest first: the anchor (the caption the window is centred on) comes first.
    assert [s["meta"]["captions"][0]["text"] for s in good0] == SPEECH
    # Speech is spoken at 4.2 s, inside the second window only.
    ratios = [s["meta"]["speech_ratio"] for s in good0]
    assert ratios[1] > 0.3 and ratios[1] == max(ratios)
    assert [s["meta"]["text_mask"] for s in good0][1] == 1
    noaudio = by_video["noaudio"][0]
    assert noaudio["meta"]["audio_mask"] == 0 and noaudio["meta"]["text_mask"] == 0
    assert not noaudio["audio"].any()
    tok = json.loads((out / "tokenizer.json").read_text())
    assert "flour" in tok["model"]["vocab"] and tok["model"]["vocab"]["[PAD]"] == 0


def test_every_bad_input_is_recorded_and_nothing_else_lost(full_run):
    out, summary = full_run
    rows = pq.read_table(out / "errors.parquet").to_pylist()
    fatal = {r["video_id"]: r for r in rows if r["fatal"]}
    assert fatal["empty"]["reason"] == "empty file (0 bytes)"
    assert "ffprobe cannot read it" in fatal["garbage"]["reason"]
    assert fatal["audioonly"]["reason"] == "no video stream"
    assert "shorter than the 3.2s training window" in fatal["short"]["reason"]
    assert "cannot read file" in fatal["dangling"]["reason"]
    assert "missing video for caption entry" in fatal["notonDisk"]["reason"]
    assert fatal["truncated"]["stage"] in ("probe", "decode")
    notes = [r["reason"] for r in rows if not r["fatal"]]
    assert any("negative start" in n for n in notes)
    assert any("empty text" in n for n in notes)
    assert any("after the video ends" in n for n in notes)
    assert any("no audio stream" in n for n in notes)
    assert all("\n" not in r["reason"] for r in rows)
    assert summary["errors_by_stage"]["probe"] >= 3
    s = json.loads((out / "summary.json").read_text())
    assert s == summary and s["windows"]["written"] >= 13 and s["bytes_per_sample"] > 0
    stats = json.loads(next((out / "shards").glob("*.stats.json")).read_text())
    assert {"samples", "bytes", "seconds", "keys", "errors"} <= set(stats)


def test_rerun_skips_finished_shards(full_run, corpus):
    out, summary = full_run
    again = run_preprocess(cfg_for(corpus, out, samples_per_shard=3), show_progress=False)
    assert again["shards_resumed"] == again["shards"] == summary["shards"]
    assert again["samples_written"] == summary["samples_written"]


def test_changed_settings_refuse_to_mix(full_run, corpus):
    out, _ = full_run
    with pytest.raises(ValueError, match="fps differ"):
        run_preprocess(cfg_for(corpus, out, samples_per_shard=3, fps=8.0), show_progress=False)


def test_audioset_segments(tmp_path, ray_local):
    v = tmp_path / "videos"
    make_clip(v / "abcdefghijk_30.000_40.000.mp4", 10)
    make_clip(v / "AAAAAAAAAAA.mp4", 10, audio=None)
    # The whole YouTube video, downloader-named Y<YTID>, whose labelled segment is 30-40 s; a
    # clock in the picture: frame brightness = 5 x its time in seconds.
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=32x24:r=10:d=45,geq=lum='5*T':cb=128:cr=128",
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(v / "Ywholevideo0.mp4"),
    )  # fmt: skip
    (tmp_path / "seg.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2, num_segs=2, num_unique_labels=1, num_positives=2\n"
        '# YTID, start_seconds, end_seconds, positive_labels\nabcdefghijk, 30.000, 40.000, "/m/04rlf,/m/09x0r"\n'
        'AAAAAAAAAAA, 0.000, 10.000, "/m/04rlf"\nwholevideo0, 30.000, 40.000, "/m/09x0r"\n'
        "broken row without fields\n"
    )
    cfg = PreprocessConfig(
        source="audioset",
        videos=str(v),
        segments=str(tmp_path / "seg.csv"),
        out=str(tmp_path / "out"),
        short_side=96,
    )
    summary = run_preprocess(cfg, show_progress=False)
    samples = [decode_sample(s) for s in wds.WebDataset(list_shards(cfg.out), shardshuffle=False)]
    assert summary["samples_written"] == len(samples) == 6  # 2 windows per 10 s segment
    m = {s["key"]: s["meta"] for s in samples}
    first = m["abcdefghijk_30000_40000_00000000"]
    assert first["labels"] == ["/m/04rlf", "/m/09x0r"] and first["segment"] == [30.0, 40.0]
    assert all(x["text_mask"] == 0 and x["captions"] == [] for x in m.values())
    assert all(x["speech_ratio"] < 0.3 for x in m.values())
    # The whole video is windowed over its labelled segment only, and the frames are from there.
    whole = sorted(
        (s for s in samples if s["meta"]["video_id"] == "wholevideo0"), key=lambda s: s["key"]
    )
    assert [(s["meta"]["start"], s["meta"]["end"]) for s in whole] == [(30.0, 34.0), (36.0, 40.0)]
    for s in whole:
        red = s["video"][:, :, :, 0].reshape(len(s["video"]), -1).mean(axis=1)  # [T]
        clock = (red * 219 / 255 + 16) / 5  # JPEG full range back to the source's luma 5 t
        assert clock[0] == pytest.approx(s["meta"]["start"], abs=0.5)
        assert clock[-1] == pytest.approx(s["meta"]["end"] - 0.1, abs=0.5)
    errors = pq.read_table(Path(cfg.out) / "errors.parquet").to_pylist()
    assert any("expected 4 fields" in e["reason"] for e in errors)
    # The summary groups by cause; no bucket carries a machine path or a line number.
    assert summary["errors_by_reason"] == {"segments: expected N fields, got N": 1}


def test_kill_dash_nine_then_rerun_gives_the_same_keys(corpus, full_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        *VATT,
        *preprocess_args(corpus),
        "--out",
        str(out),
        "--num-cpus",
        "2",
        "--no-progress",
        "short_side=128",
        "samples_per_shard=3",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list(out.glob("shards/*.stats.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-way"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its embedded Ray and every ffmpeg child
    proc.wait()
    done_before = len(list((out / "shards").glob("*.stats.json")))
    assert 1 <= done_before < json.loads((full_run[0] / "summary.json").read_text())["shards"]
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    keys = read_keys(out)
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(read_keys(full_run[0]))
    assert not list((out / "shards").glob("*.tmp-*"))


def test_cli_exit_codes(corpus, tmp_path, vatt_in_process, vatt_here):
    vatt = vatt_here

    base = preprocess_args(corpus)
    for args, needle in [
        (base, "--out is required"),
        ([*base, "--out", str(tmp_path / "o"), "colour=red"], "unknown config key colour"),
        ([*base, "--out", str(tmp_path / "o"), "fps=fast"], "fps: expected a number"),
        (
            [*base, "--out", str(tmp_path / "o"), "window_seconds=2"],
            "must be >= train_window_seconds",
        ),
        (["preprocess", "youtube8m", "--out", "x"], "invalid choice"),
        (
            [*base, "--out", str(tmp_path / "o"), "--config", str(tmp_path / "missing.yaml")],
            "missing.yaml: not found",
        ),
    ]:
        code, err = vatt_in_process(*args)
        assert code == 2, (args, err)
        assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    # Too many bad inputs for the threshold: one line, exit 1, but the good shards are written.
    r = vatt(
        *base,
        "--out",
        str(tmp_path / "strict"),
        "--num-cpus",
        "2",
        "--no-progress",
        "short_side=96",
        "max_error_fraction=0.05",
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert (
        r.stderr.strip().splitlines()[-1].startswith("vatt preprocess: failed:")
        and "max_error_fraction=0.05" in r.stderr
    )
    assert len(read_keys(tmp_path / "strict")) > 0


def test_inspect_prints_json_and_writes_a_contact_sheet(full_run, tmp_path, capsys):
    from PIL import Image

    from pipeline.cli import main

    out, summary = full_run
    sheet = tmp_path / "sheet.png"
    assert (
        main(
            [
                "inspect",
                str(out),
                "--json",
                "--limit",
                "0",
                "--contact-sheet",
                str(sheet),
                "--sheet-samples",
                "3",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == summary["samples_written"]
    first = lines[0]
    assert (
        first["video_shape"][0] == 40
        and first["video_shape"][3] == 3
        and first["audio_samples"] == 192000
    )
    assert {"key", "source", "audio_mask", "text_mask", "speech_ratio", "captions"} <= set(first)
    assert (first["schema_version"], first["video_codec"], first["audio_codec"]) == (
        2, "h264", "opus",
    )  # fmt: skip
    assert first["video_bytes"] > 0 and first["audio_bytes"] > 0
    img = Image.open(sheet)
    assert img.size[0] > 300 and img.size[1] > 200
    assert main(["inspect", str(tmp_path / "nope")]) == 2
