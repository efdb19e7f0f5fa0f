"""WebVid-style video-text ingest: the CSV reader's good and bad rows, ALPRO's sparse frame
choice, and the job for real (ffmpeg, a local Ray, shards read back) with its CLI exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ffmpeg, make_clip

from preprocessing.config import PreprocessConfig
from preprocessing.jobs import run_preprocess
from preprocessing.shard_format import (
    AUDIO_MEMBER,
    decode_sample,
    iter_samples,
    list_shards,
    sparse_frame_indices,
)
from preprocessing.sources import read_webvid

WEBVID_COLUMNS = ["videoid", "contentUrl", "duration", "page_dir", "name"]
# Nine grey levels: block j of the "clock" clip shows GREYS[j] (see make_grey_clock).
GREYS = [16 + 26 * j for j in range(9)]


def write_csv(path: Path, rows: list[list[str]], columns: list[str] = WEBVID_COLUMNS) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def row(vid: str, name: str, page_dir: str = "", seconds: int = 4) -> list[str]:
    return [vid, f"https://example.invalid/{vid}.mp4", f"PT00H00M{seconds:02d}S", page_dir, name]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# --- The CSV reader (plain Python, no media) ---------------------------------------------------


def test_rows_find_their_files_by_page_dir_root_or_path_column(tmp_path):
    v = tmp_path / "videos"
    touch(v / "000001_000050" / "1001.mp4")
    touch(v / "1002.webm")  # no page_dir cell: the root
    touch(v / "000001_000050x" / "other.mp4")
    rows = [
        row("1001", "a dog runs on the beach", "000001_000050"),
        row("1002", "  clouds   over mountains ", ""),
    ]
    inputs, errors = read_webvid(v, write_csv(tmp_path / "r.csv", rows))
    assert errors == []
    assert [(i.video_id, Path(i.path).relative_to(v).as_posix()) for i in inputs] == [
        ("1001", "000001_000050/1001.mp4"),
        ("1002", "1002.webm"),
    ]
    assert inputs[1].captions[0].text == "clouds over mountains"  # whitespace collapsed
    assert all(i.source == "webvid" and i.clip_id == i.video_id for i in inputs)

    # An explicit path column (video2dataset's "files" layout), relative or absolute.
    touch(v / "00000" / "000000003.mp4")
    absolute = touch(tmp_path / "elsewhere" / "clip.mkv")
    rows = [["7", "a cat", "00000/000000003.mp4"], ["8", "a bird", str(absolute)]]
    inputs, errors = read_webvid(
        v, write_csv(tmp_path / "p.csv", rows, ["videoid", "name", "path"])
    )
    assert errors == [] and [i.path for i in inputs] == [
        str(v / "00000" / "000000003.mp4"),
        str(absolute),
    ]


def test_every_bad_row_is_one_line_naming_file_and_row(tmp_path):
    v = tmp_path / "videos"
    for vid in ("1", "2", "3", "4", "6"):
        touch(v / "p" / f"{vid}.mp4")
    (v / "p" / "9.txt").write_text("not a video")
    text = (
        "videoid,contentUrl,duration,page_dir,name\n"
        "1,u,PT4S,p,good one\n"
        "2,u,PT4S,p,\n"  # empty caption
        ",u,PT4S,p,no id\n"  # empty videoid
        "3,u,PT4S,p\n"  # a field short
        "1,u,PT4S,p,good one again\n"  # repeated videoid: not fatal
        "5,u,PT4S,p,missing file\n"
        "9,u,PT4S,p,only a .txt\n"
        '6,u,PT4S,p,"a caption, with a comma\nand a line break"\n'  # quoted: one row
        "\n"
        "4,u,PT4S,p,   \n"  # blank caption
    )
    path = tmp_path / "results.csv"
    path.write_text(text, encoding="utf-8")
    inputs, errors = read_webvid(v, path)
    assert [i.video_id for i in inputs] == ["1", "6"]
    assert inputs[1].captions[0].text == "a caption, with a comma and a line break"
    got = {(e.video_id, e.stage, e.fatal): e.reason for e in errors}
    assert len(got) == len(errors) == 7, errors
    assert got[("2", "csv", True)] == f"{path} line 3: empty caption (name)"
    assert got[("", "csv", True)] == f"{path} line 4: empty videoid"
    assert got[("3", "csv", True)] == f"{path} line 5: expected 5 fields, got 4"
    assert got[("1", "csv", False)].startswith(
        f"{path} line 6: videoid 1 listed again (first on line 2)"
    )
    assert got[("5", "input", True)].startswith(f"{path} line 7: missing video (no 5 with any of")
    assert "found 9.txt, whose extension is not in video_extensions" in got[("9", "input", True)]
    assert got[("4", "csv", True)] == f"{path} line 12: empty caption (name)"
    assert all("\n" not in e.reason for e in errors)


@pytest.mark.parametrize(
    "content, reason",
    [
        (
            "videoid,contentUrl,duration\n1,u,PT4S\n",
            "missing column(s) name (header: videoid, contentUrl, duration)",
        ),
        ("id,caption\n1,a\n", "missing column(s) videoid, name"),
        ("", "empty, no header line"),
        ("videoid,name,name\n1,a,b\n", "column(s) name appear more than once"),
    ],
)
def test_unusable_csv_is_one_fatal_row(tmp_path, content, reason):
    path = tmp_path / "r.csv"
    path.write_text(content, encoding="utf-8")
    inputs, errors = read_webvid(tmp_path, path)
    assert inputs == [] and len(errors) == 1 and errors[0].fatal and errors[0].stage == "csv"
    assert reason in errors[0].reason and str(path) in errors[0].reason


def test_csv_encoding_problems(tmp_path):
    touch(tmp_path / "v" / "1.mp4")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffvideoid,name\n1,café\n".encode())  # Excel's UTF-8 with BOM
    inputs, errors = read_webvid(tmp_path / "v", bom)
    assert errors == [] and inputs[0].captions[0].text == "café"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("videoid,name\n1,café\n".encode("latin-1"))
    inputs, errors = read_webvid(tmp_path / "v", latin)
    assert inputs == [] and "is not UTF-8" in errors[0].reason
    inputs, errors = read_webvid(tmp_path / "v", tmp_path / "absent.csv")
    assert inputs == [] and errors[0].reason.startswith(f"cannot read {tmp_path / 'absent.csv'}")


def test_missing_video_folder_is_a_row_per_listed_clip(tmp_path):
    path = write_csv(tmp_path / "r.csv", [row("1", "a"), row("2", "b", "pp")])
    inputs, errors = read_webvid(tmp_path / "nope", path)
    assert inputs == [] and len(errors) == 2
    assert all("cannot list video folder" in e.reason and e.fatal for e in errors)


# --- Sparse frames (ALPRO's num_frm over the clip) ---------------------------------------------


def test_sparse_frame_indices():
    assert sparse_frame_indices(8, 4) == [1, 3, 5, 7]  # the middle of each 2-frame segment
    assert sparse_frame_indices(4, 4) == [0, 1, 2, 3]
    assert sparse_frame_indices(3, 4) == [0, 1, 2, 2]  # fewer frames than segments: repeats
    assert sparse_frame_indices(1, 4) == [0, 0, 0, 0]
    rng = np.random.default_rng(0)
    draws = np.array([sparse_frame_indices(8, 4, rng) for _ in range(400)])
    for s in range(4):  # one frame per segment, each of its frames drawn
        assert set(draws[:, s]) == {2 * s, 2 * s + 1}
    draws = np.array([sparse_frame_indices(10, 4, rng) for _ in range(400)])
    assert (np.diff(draws, axis=1) >= 0).all() and draws.min() == 0 and draws.max() == 9
    with pytest.raises(ValueError):
        sparse_frame_indices(0, 4)


def test_config_needs_the_csv():
    with pytest.raises(ValueError, match="webvid needs csv"):
        PreprocessConfig(source="webvid", videos="v", out="o")
    with pytest.raises(ValueError, match="sparse_frames"):
        PreprocessConfig(source="webvid", videos="v", out="o", csv="c", sparse_frames=0)
    assert PreprocessConfig(source="webvid", videos="v", out="o", csv="c").clip_frames == 8


# --- The job for real --------------------------------------------------------------------------


def make_grey_clock(path: Path, seconds: float = 4.0) -> Path:
    """A video whose grey level says the time: block j (centred on j * seconds / 8, half
    blocks at both ends) shows GREYS[j], so stored frame i (at i * seconds / 8) shows GREYS[i].
    20 fps: every block is a whole number of frames (at 25 fps ffmpeg would round each up)."""
    step = seconds / 8
    lengths = [step / 2] + [step] * 7 + [step / 2]
    args, chain = [], ""
    for j, (grey, d) in enumerate(zip(GREYS, lengths)):
        args += [
            "-f",
            "lavfi",
            "-i",
            f"color=c=0x{grey:02x}{grey:02x}{grey:02x}:s=320x180:r=20:d={d}",
        ]
        chain += f"[{j}:v]"
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg(
        *args, "-filter_complex", f"{chain}concat=n={len(lengths)}:v=1[v]", "-map", "[v]",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def webvid_corpus(tmp_path_factory):
    """Good clips (one with an audio stream, which WebVid ingest ignores), and bad rows."""
    d = tmp_path_factory.mktemp("webvid")
    v = d / "videos"
    make_grey_clock(v / "000001_000050" / "1001.mp4")
    make_clip(v / "000001_000050" / "1002.mp4", 6, size="426x240", audio=None)
    make_clip(v / "1003.mp4", 5, size="240x320", audio="tone")  # audio: not read
    make_clip(v / "000001_000050" / "1004.mp4", 0.5, audio=None)  # too short
    (v / "000001_000050" / "1005.mp4").write_bytes(np.random.default_rng(1).bytes(20000))
    rows = [
        row("1001", "a grey clock ticks", "000001_000050"),
        row("1002", "Test pattern, slowly moving", "000001_000050", 6),
        row("1003", "a tall test card with a tone", ""),
        row("1004", "too short to use", "000001_000050", 1),
        row("1005", "random bytes", "000001_000050"),
        row("1006", "no such file", "000001_000050"),
        row("1007", "", "000001_000050"),
    ]
    write_csv(d / "results_train.csv", rows)
    return d


def webvid_cfg(corpus: Path, out: Path, **kw) -> PreprocessConfig:
    return PreprocessConfig(
        source="webvid",
        videos=str(corpus / "videos"),
        csv=str(corpus / "results_train.csv"),
        out=str(out),
        short_side=128,
        **kw,
    )


@pytest.fixture(scope="module")
def webvid_run(webvid_corpus, tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("webvid_out")
    summary = run_preprocess(webvid_cfg(webvid_corpus, out, samples_per_shard=2), False)
    return out, summary


@pytest.mark.slow
def test_webvid_round_trip(webvid_run):
    out, summary = webvid_run
    samples = {s["__key__"]: s for s in iter_samples(list_shards(str(out)))}
    assert sorted(samples) == ["1001_00000000", "1002_00000000", "1003_00000000"]
    assert all(Path(p).name.startswith("webvid-") for p in list_shards(str(out)))
    assert summary["source"] == "webvid" and summary["samples_written"] == 3
    captions = {"1001": "a grey clock ticks", "1002": "Test pattern, slowly moving"}
    captions["1003"] = "a tall test card with a tone"
    for key, raw in samples.items():
        s = decode_sample(raw)
        m = s["meta"]
        vid = key.split("_")[0]
        assert m["source"] == "webvid" and m["video_id"] == vid and m["start"] == 0.0
        assert m["num_frames"] == 8 and m["sparse_frames"] == 4 and s["video"].shape[0] == 8
        assert abs(m["fps"] * m["end"] - 8) < 1e-6  # 8 frames spread over the whole clip
        assert m["captions"] == [{"text": captions[vid], "start": 0.0, "end": m["end"]}]
        assert m["text_mask"] == 1 and m["speech_ratio"] == 0.0  # no speech gating
        assert m["audio_mask"] == 0 and m["num_samples"] == 0 and m["audio_stream"] is None
        assert s["audio"].shape == (0,) and len(raw[AUDIO_MEMBER]) <= 128  # compact silence
        assert min(m["width"], m["height"]) == 128
    ends = [decode_sample(samples[f"{v}_00000000"])["meta"]["end"] for v in ("1002", "1003")]
    assert abs(ends[0] - 6.0) < 0.1 and abs(ends[1] - 5.0) < 0.1  # the whole clip
    # Frame i shows the clip at i * duration / 8: the grey clock's block i.
    clock = decode_sample(samples["1001_00000000"])
    greys = clock["video"].reshape(8, -1).mean(axis=1)
    assert np.abs(greys - GREYS[:8]).max() < 6, greys
    # ALPRO's 4 frames: the middle frame of each segment, decoded alone.
    picked = decode_sample(samples["1001_00000000"], sparse_frame_indices(8, 4))["video"]
    assert np.abs(picked.reshape(4, -1).mean(axis=1) - [GREYS[i] for i in (1, 3, 5, 7)]).max() < 6
    tok = json.loads((out / "tokenizer.json").read_text())
    assert {"grey", "clock", "pattern"} <= set(tok["model"]["vocab"])


@pytest.mark.slow
def test_webvid_bad_rows_are_recorded_and_nothing_else_lost(webvid_run):
    out, summary = webvid_run
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    fatal = {e["video_id"]: e for e in errors if e["fatal"]}
    assert sorted(fatal) == ["1004", "1005", "1006", "1007"], errors
    assert (
        fatal["1004"]["stage"] == "window"
        and "shorter than min_clip_seconds=1" in fatal["1004"]["reason"]
    )
    assert fatal["1005"]["stage"] == "probe" and fatal["1005"]["path"].endswith("1005.mp4")
    assert fatal["1006"]["stage"] == "input" and "line 7: missing video" in fatal["1006"]["reason"]
    assert fatal["1007"]["stage"] == "csv" and fatal["1007"]["reason"].endswith(
        "line 8: empty caption (name)"
    )
    assert all("\n" not in e["reason"] for e in errors)
    assert not [e for e in errors if "audio" in e["reason"]]  # no audio notes for WebVid
    assert summary["inputs"] == {"listed": 7, "usable": 3}
    assert summary["errors"] == 4 and summary["samples_written"] == 3


@pytest.mark.slow
def test_webvid_cli_exit_codes(webvid_corpus, tmp_path, vatt_in_process, vatt_here):
    vatt = vatt_here

    videos = str(webvid_corpus / "videos")
    good_csv = str(webvid_corpus / "results_train.csv")
    out = str(tmp_path / "o")
    for args, needle in [
        (["preprocess", "webvid", "--videos", videos, "--out", out], "webvid needs csv"),
        (["preprocess", "webvid", "--csv", good_csv, "--out", out], "--videos is required"),
        (
            [
                "preprocess",
                "webvid",
                "--videos",
                videos,
                "--csv",
                good_csv,
                "--out",
                out,
                "sparse_frames=0",
            ],
            "sparse_frames (0) and frames_per_segment (2) must be >= 1",
        ),
        (["preprocess", "webvid", "--videos", videos, "--csv"], "expected one argument"),
    ]:
        code, err = vatt_in_process(*args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert needle in err and len(lines) == 1 and "Traceback" not in err, err
    # A CSV without the caption column: one line, exit 1, the reason in errors.parquet.
    bad = write_csv(tmp_path / "bad.csv", [["1001", "000001_000050"]], ["videoid", "page_dir"])
    r = vatt(
        "preprocess", "webvid", "--videos", videos, "--csv", str(bad), "--out", str(tmp_path / "b"),
        "--num-cpus", "1", "--no-progress",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("vatt preprocess: failed:")
    rows = pq.read_table(tmp_path / "b" / "errors.parquet").to_pylist()
    assert [e["reason"] for e in rows] == [
        f"{bad}: missing column(s) name (header: videoid, page_dir)"
    ]
    # The good CSV: 4 bad rows vs 3 samples (4/7) is under a 0.6 threshold: exit 0.
    r = vatt(
        "preprocess", "webvid", "--videos", videos, "--csv", good_csv, "--out", str(tmp_path / "g"),
        "--num-cpus", "1", "--no-progress", "short_side=64", "max_error_fraction=0.6",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "webvid" in r.stdout and "inputs usable / listed" in r.stdout
    # `vatt inspect` reads WebVid samples (empty waveform, low fps) like any other.
    r = vatt("inspect", str(tmp_path / "g"), "--limit", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("webvid") >= 3 and "audio 0@48000" in r.stdout, r.stdout


# --- The WebVid-style sample set (`vatt sample-data`) ------------------------------------------

WEBVID_ONLY = dict(videos=0, audioset_clips=0, msrvtt_videos=0, ucf101_groups=0)
WEBVID_ONLY |= dict(esc50_clips_per_class=0, youcook2_videos=0, kinetics_clips_per_class=0)


@pytest.fixture(scope="module")
def webvid_sample(tmp_path_factory):
    from pipeline.sample_data.corpus import SampleCorpusConfig, generate_sample_corpus

    out = tmp_path_factory.mktemp("webvid_sample") / "corpus"
    config = SampleCorpusConfig(**WEBVID_ONLY, webvid_clips=8, webvid_pairs=8, workers=2)
    summary = generate_sample_corpus(out, config)
    assert (summary.webvid_clips, summary.webvid_pairs) == (8, 8)
    return out, json.loads((out / "topics.json").read_text())


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[2:][i : i + 2], 16) for i in (0, 2, 4)], dtype=float)


def shows(region: np.ndarray, entry: dict, side: str) -> bool:
    """The region's median colour is the background recorded for `side`, and (in a pair) not
    the other half's (a few levels of YUV 4:2:0 + JPEG rounding allowed)."""
    own = np.abs(region - rgb(entry["backgrounds"][side])).max()
    other = np.abs(region - rgb(entry["backgrounds"]["right" if side == "left" else "left"]))
    return own <= 8 and (entry["layout"] == "single" or other.max() > own)


def halves(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median colour of the left and right half of an [H, W, 3] frame (robust to the shape)."""
    w = frame.shape[1]
    return tuple(
        np.median(part.reshape(-1, 3), axis=0) for part in (frame[:, : w // 2], frame[:, w // 2 :])
    )


def test_webvid_sample_files_csvs_and_ground_truth(webvid_sample):
    out, truth = webvid_sample
    files = truth["files"]["webvid"]
    assert len(files) == 16
    rows = {}
    for split in ("train", "val"):
        with (out / "webvid" / f"results_{split}.csv").open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == WEBVID_COLUMNS
            rows |= {r["videoid"]: (split, r) for r in reader}
    assert sorted(rows) == sorted(files)
    layouts = [f["layout"] for f in files.values()]
    assert layouts.count("single") == 8 and layouts.count("pair") == 8
    val = [f for f in files.values() if f["split"] == "val"]
    assert {f["layout"] for f in val} == {"single", "pair"} and len(
        val
    ) == 3  # 1 of 8 singles, 2 of 8 pairs
    names = {t["name"]: t for t in truth["topics"]}
    for vid, entry in files.items():
        split, r = rows[vid]
        assert entry["split"] == split and r["name"] == entry["caption"] and vid.isdigit()
        assert (
            entry["path"]
            == f"webvid/videos/{r['page_dir']}/{vid}.mp4"
            == f"webvid/videos/{entry['page_dir']}/{vid}.mp4"
        )
        assert r["duration"] == f"PT00H00M{entry['duration']:02d}S"
        assert (entry["width"], entry["height"]) == (448, 252)
        words = entry["caption_words"]
        if entry["layout"] == "pair":
            assert entry["left"] != entry["right"] and "topic" not in entry
            assert set(words) == {entry["left"], entry["right"]}
        else:
            assert entry["left"] == entry["right"] == entry["topic"] and set(words) == {
                entry["topic"]
            }
        lowered = entry["caption"].lower()
        for topic, used in words.items():  # the caption names each of its topics
            assert len(used) >= 2 and all(w in names[topic]["words"] and w in lowered for w in used)
        probe = json.loads(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(out / entry["path"])],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        assert [s["codec_type"] for s in probe["streams"]] == ["video"]  # silent, like WebVid
        assert abs(float(probe["format"]["duration"]) - entry["duration"]) < 0.1


def test_webvid_sample_halves_show_their_topics(webvid_sample):
    """Read back with ffmpeg: each half of a two-topic clip shows its own topic's scene."""
    out, truth = webvid_sample
    for entry in truth["files"]["webvid"].values():
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", "1", "-i", str(out / entry["path"]), "-frames:v", "1",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        frame = np.frombuffer(raw, np.uint8).reshape(252, 448, 3)
        left, right = halves(frame)
        assert shows(left, entry, "left") and shows(right, entry, "right"), (entry, left, right)
        theirs = {t["name"]: rgb(t["colour"]) for t in truth["topics"]}  # drawn from the topic's
        for side in ("left", "right"):
            assert np.abs(rgb(entry["backgrounds"][side]) - theirs[entry[side]]).max() <= 28


@pytest.mark.slow
def test_webvid_sample_preprocesses_into_region_faithful_shards(webvid_sample, tmp_path, ray_local):
    """The sample set through `vatt preprocess webvid`'s job: every train row becomes a sample
    with its caption, and the halves of the stored frames still show the recorded topics."""
    out, truth = webvid_sample
    cfg = PreprocessConfig(
        source="webvid",
        videos=str(out / "webvid" / "videos"),
        csv=str(out / "webvid" / "results_train.csv"),
        out=str(tmp_path / "shards"),
        short_side=96,
    )
    summary = run_preprocess(cfg, show_progress=False)
    files = truth["files"]["webvid"]
    train = sorted(v for v, f in files.items() if f["split"] == "train")
    assert summary["errors"] == 0 and summary["samples_written"] == len(train) == 13
    seen = []
    for raw in iter_samples(list_shards(str(tmp_path / "shards"))):
        s = decode_sample(raw, sparse_frame_indices(8, 4))
        vid = s["meta"]["video_id"]
        seen.append(vid)
        assert s["meta"]["captions"][0]["text"] == files[vid]["caption"]
        assert s["video"].shape[:3] == (4, 96, 170)  # 448x252 -> short side 96
        for frame in s["video"]:
            left, right = halves(frame)
            assert shows(left, files[vid], "left") and shows(right, files[vid], "right")
    assert sorted(seen) == train


@pytest.mark.parametrize(
    "bad",
    [{"webvid_clips": -1}, {"webvid_pairs": -2}, {"webvid_min_s": 5, "webvid_max_s": 4}],
)
def test_webvid_sample_config_validation(bad):
    from pipeline.sample_data.corpus import SampleCorpusConfig

    with pytest.raises(ValueError):
        SampleCorpusConfig(**bad)
    with pytest.raises(ValueError, match="num_topics >= 2"):
        SampleCorpusConfig(webvid_pairs=1, num_topics=1, youcook2_videos=0)


def test_webvid_sample_cli_flag_errors_exit_2(tmp_path, capsys):
    from pipeline import cli

    assert cli.main(["sample-data", str(tmp_path / "x"), "--webvid-pairs", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vatt sample-data: error: --webvid-pairs must be >= 0")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
