"""Tests of the built-in sample corpus (pipeline/sample_data/corpus.py, `vatt sample-data`).

Real ffmpeg, ffprobe and espeak-ng; no mocks. One small corpus is generated per module.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.sample_data.corpus import (
    BAD_INPUT_KINDS,
    ESC50_COLUMNS,
    GENERATOR,
    KINETICS_COLUMNS,
    SEGMENTS_COLUMNS_LINE,
    SEGMENTS_CREATED_LINE,
    WINDOW_S,
    YOUCOOK2_COLUMNS,
    SampleCorpusConfig,
    audioset_file_name,
    generate_sample_corpus,
    kinetics_file_name,
    make_bad_inputs,
    make_plans,
    prepare_output_dir,
    ucf101_splits,
    ucf101_test_groups,
)

SMALL = {"videos": 3, "audioset_clips": 2, "msrvtt_videos": 2, "seed": 0}
SMALL |= {"ucf101_groups": 2, "esc50_clips_per_class": 1, "youcook2_videos": 2}
SMALL |= {"kinetics_clips_per_class": 2, "webvid_clips": 2, "webvid_pairs": 2}
YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
AUDIOSET_NAME = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_(\d+\.\d{3})_(\d+\.\d{3})\.mp4$")
VAD_RATE = 48000
VAD_FRAME_S = 0.03


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "corpus"
    summary = generate_sample_corpus(out, SampleCorpusConfig(**SMALL, workers=2))
    assert summary.howto_videos == 3 and summary.captions > 0
    return out


@pytest.fixture(scope="module")
def truth(corpus) -> dict:
    return json.loads((corpus / "topics.json").read_text())


@pytest.fixture(scope="module")
def captions(corpus) -> dict:
    return json.loads((corpus / "howto100m" / "caption.json").read_text())


def ffprobe(path: Path) -> dict:
    cmd = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return {"rc": done.returncode, **(json.loads(done.stdout) if done.returncode == 0 else {})}


def vad_flags(path: Path) -> list[bool]:
    """webrtcvad(2) speech flag per 30 ms frame of the file's audio (48 kHz int16 mono)."""
    import webrtcvad

    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path)]
    cmd += ["-f", "s16le", "-ac", "1", "-ar", str(VAD_RATE), "pipe:"]
    pcm = subprocess.run(cmd, capture_output=True, check=True).stdout
    vad = webrtcvad.Vad(2)
    n = int(VAD_RATE * VAD_FRAME_S) * 2
    return [vad.is_speech(pcm[i : i + n], VAD_RATE) for i in range(0, len(pcm) - n + 1, n)]


# ---------------------------------------------------------------------------------------------
# Layout and formats
# ---------------------------------------------------------------------------------------------


def test_layout_and_names(corpus, truth):
    howto = sorted(p.name for p in (corpus / "howto100m" / "videos").iterdir())
    audioset = sorted(p.name for p in (corpus / "audioset" / "videos").iterdir())
    msrvtt = sorted(p.name for p in (corpus / "msrvtt" / "videos").iterdir())
    assert len(howto) == 3 and len(audioset) == 2 and len(msrvtt) == 2
    assert all(YT_ID.match(n[: -len(".mp4")]) for n in howto)
    assert all(AUDIOSET_NAME.match(n) for n in audioset)
    assert all(re.fullmatch(r"video\d+\.mp4", n) for n in msrvtt)
    for name in ("caption.json",):
        assert (corpus / "howto100m" / name).is_file()
    for name in ("segments.csv", "class_labels_indices.csv"):
        assert (corpus / "audioset" / name).is_file()
    assert (corpus / "msrvtt" / "msrvtt_test.csv").is_file()
    assert not list(corpus.rglob("*.partial.mp4"))
    # topics.json names every file with its topic.
    assert truth["generator"] == GENERATOR and truth["seed"] == 0
    for kind, names in (("howto100m", howto), ("audioset", audioset), ("msrvtt", msrvtt)):
        files = truth["files"][kind]
        assert sorted(Path(f["path"]).name for f in files.values()) == names
        assert {f["topic"] for f in files.values()} <= {t["name"] for t in truth["topics"]}
    held_out = {n[: -len(".mp4")] for n in msrvtt}
    assert not held_out & set(truth["files"]["howto100m"])


def test_audioset_file_name_rule():
    assert audioset_file_name("-0RWZT-miFs", 420, 430) == "-0RWZT-miFs_420.000_430.000.mp4"
    # YTIDs may contain '_': split from the right.
    assert "a_b-cdefghI_1.500_11.500".rsplit("_", 2) == ["a_b-cdefghI", "1.500", "11.500"]


def test_caption_json(corpus, truth, captions):
    assert set(captions) == set(truth["files"]["howto100m"])
    words_of = {t["name"]: set(t["words"]) for t in truth["topics"]}
    for vid, c in captions.items():
        assert set(c) == {"start", "end", "text"}
        assert len(c["start"]) == len(c["end"]) == len(c["text"]) > 0
        assert all(isinstance(x, float) for x in c["start"] + c["end"])
        assert all(isinstance(t, str) for t in c["text"])
        duration = truth["files"]["howto100m"][vid]["duration"]
        assert 20 <= duration <= 90
        for i, (s, e, text) in enumerate(zip(c["start"], c["end"], c["text"])):
            assert 0 <= s < e <= duration
            if i + 1 < len(c["start"]):
                assert e < c["start"][i + 1], "captions overlap"
                assert c["start"][i + 1] - s >= 2.5 - 1e-6
            assert 3 <= len(text.split()) <= 8
            # Captions say the video's topic: at least one of its words.
            assert set(text.split()) & words_of[truth["files"]["howto100m"][vid]["topic"]]


def test_segments_csv(corpus, truth):
    lines = (corpus / "audioset" / "segments.csv").read_text().splitlines()
    assert lines[0] == SEGMENTS_CREATED_LINE == "# Segments csv created Sun Mar  5 10:54:31 2017"
    assert lines[2] == SEGMENTS_COLUMNS_LINE
    assert [ln.startswith("#") for ln in lines[:4]] == [True, True, True, False]
    rows = list(csv.reader(lines[3:], skipinitialspace=True))
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    counts = dict(kv.split("=") for kv in lines[1][2:].split(", "))
    assert int(counts["num_segs"]) == 2 and int(counts["num_ytids"]) == 2
    assert int(counts["num_positives"]) == sum(len(r[3].split(",")) for r in rows)
    with (corpus / "audioset" / "class_labels_indices.csv").open() as f:
        classes = list(csv.DictReader(f))
    assert list(classes[0]) == ["index", "mid", "display_name"]
    known = {c["mid"] for c in classes}
    assert int(counts["num_unique_labels"]) == len({m for r in rows for m in r[3].split(",")})
    files = {p.name for p in (corpus / "audioset" / "videos").iterdir()}
    for ytid, start, end, labels in rows:
        assert re.fullmatch(r"\d+\.\d{3}", start) and re.fullmatch(r"\d+\.\d{3}", end)
        assert float(end) - float(start) == 10.0
        assert audioset_file_name(ytid, float(start), float(end)) in files
        assert all(m.startswith("/m/") and m in known for m in labels.split(","))
    # The raw row is written the way the real CSVs are: ', ' separators and quoted labels.
    assert re.fullmatch(r'[\w-]{11}, \d+\.000, \d+\.000, "/m/\w+(,/m/\w+)*"', lines[3])


def test_msrvtt_csv(corpus, truth):
    with (corpus / "msrvtt" / "msrvtt_test.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["key", "vid_key", "video_id", "sentence"]
    words_of = {t["name"]: set(t["words"]) for t in truth["topics"]}
    for i, row in enumerate(rows):
        assert row["key"] == f"ret{i}"
        assert row["vid_key"] == "msr" + row["video_id"][len("video") :]
        assert (corpus / "msrvtt" / "videos" / f"{row['video_id']}.mp4").is_file()
        topic = truth["files"]["msrvtt"][row["video_id"]]["topic"]
        assert set(row["sentence"].split()) & words_of[topic]


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes().decode()
    assert raw.endswith("\r\n") and raw.count("\n") == raw.count("\r\n"), "UCF101 uses CRLF"
    return raw.splitlines()


def test_ucf101_layout_and_split_files(corpus, truth):
    files = truth["files"]["ucf101"]
    assert len(files) == 8 * 2  # 8 topics x 2 groups x 1 clip
    splits = corpus / "ucf101" / "splits"
    classes = [line.split(" ") for line in _lines(splits / "classInd.txt")]
    assert [int(i) for i, _ in classes] == list(range(1, 9))
    names = [c for _, c in classes]
    assert names == sorted(names) and "CarRepair" in names
    index = {c: int(i) for i, c in classes}
    assert ucf101_splits(2) == [1, 2] and sorted(p.name for p in splits.iterdir()) == [
        "classInd.txt", "testlist01.txt", "testlist02.txt", "trainlist01.txt", "trainlist02.txt",
    ]  # fmt: skip
    for split in (1, 2):
        train = [line.split(" ") for line in _lines(splits / f"trainlist{split:02d}.txt")]
        test = _lines(splits / f"testlist{split:02d}.txt")
        assert all(" " not in line for line in test)
        groups = {"train": set(), "test": set()}
        for part, rels in (("train", [r for r, _ in train]), ("test", test)):
            for rel in rels:
                m = re.fullmatch(r"(\w+)/v_(\w+)_g(\d\d)_c(\d\d)\.avi", rel)
                assert m and m[1] == m[2] and m[1] in index, rel
                assert (corpus / "ucf101" / "videos" / rel).is_file()
                assert files[Path(rel).stem]["class"] == m[1]
                groups[part].add(int(m[3]))
            # Every class is in both parts.
            assert {r.split("/")[0] for r in rels} == set(index)
        assert groups["test"] == set(ucf101_test_groups(2, split)) == {split}
        assert not groups["train"] & groups["test"]
        assert all(index[rel.split("/")[0]] == int(label) for rel, label in train)
    # UCF101's own numbers: 25 groups, test blocks 1-7, 8-14, 15-21.
    assert [list(ucf101_test_groups(25, s)) for s in (1, 2, 3)] == [
        list(range(1, 8)), list(range(8, 15)), list(range(15, 22)),
    ]  # fmt: skip


def test_esc50_csv(corpus, truth):
    with (corpus / "esc50" / "meta" / "esc50.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == ESC50_COLUMNS
    assert [r["filename"] for r in rows] == sorted(r["filename"] for r in rows)
    assert len(rows) == 8  # 1 per class
    categories = {}
    for r in rows:
        assert re.fullmatch(r"[1-5]-\d+-[A-Z]-\d+\.wav", r["filename"])
        fold, src, take, target = r["filename"][: -len(".wav")].split("-")
        assert (fold, src, take, target) == (r["fold"], r["src_file"], r["take"], r["target"])
        assert r["esc10"] in ("True", "False")
        assert categories.setdefault(r["target"], r["category"]) == r["category"]
        entry = truth["files"]["esc50"][r["filename"][: -len(".wav")]]
        assert entry["category"] == r["category"] == entry["topic"].replace(" ", "_")
        assert (corpus / "esc50" / "audio" / r["filename"]).is_file()
    assert sorted(map(int, categories)) == list(range(8))


def test_esc50_folds_are_balanced_per_class():
    plans = [
        p for p in make_plans(SampleCorpusConfig(esc50_clips_per_class=7)) if p.kind == "esc50"
    ]
    for topic in range(8):
        folds = [int(p.name.split("-")[0]) for p in plans if p.topic == topic]
        counts = [folds.count(f) for f in range(1, 6)]
        assert sum(counts) == 7 and max(counts) - min(counts) <= 1


def _mean_rgb(path: Path, t: float) -> list[float]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{t:.2f}", "-i", str(path)]
    cmd += ["-frames:v", "1", "-vf", "scale=16:16", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    assert len(raw) == 16 * 16 * 3
    return [sum(raw[c::3]) / 256 for c in range(3)]


def test_youcook2_segments_show_their_own_topic(corpus, truth):
    with (corpus / "youcook2" / "youcookii_val.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == YOUCOOK2_COLUMNS
    colours = {t["name"]: t["colour"] for t in truth["topics"]}
    words_of = {t["name"]: set(t["words"]) for t in truth["topics"]}
    files = truth["files"]["youcook2"]
    assert len(files) == 2 and len(rows) == sum(len(e["segments"]) for e in files.values())
    for video_id, entry in files.items():
        mine = [r for r in rows if r["video_id"] == video_id]
        segments = entry["segments"]
        assert 2 <= len(mine) <= 3 and len({s["topic"] for s in segments}) == len(segments)
        assert {r["task"] for r in mine} == {str(entry["task"])}
        path = corpus / "youcook2" / "videos" / f"{video_id}.mp4"
        duration = float(ffprobe(path)["format"]["duration"])
        assert abs(duration - segments[-1]["end"]) < 0.1
        t = 0
        for row, seg in zip(mine, segments):
            start, end = int(row["start"]), int(row["end"])
            assert (start, end) == (seg["start"], seg["end"]) and start == t and end - start >= 5
            t = end
            assert set(row["text"].split()) & words_of[seg["topic"]]
            # What is seen in the middle of the segment is its topic's background colour.
            rgb = _mean_rgb(path, (start + end) / 2)

            def dist(name, rgb=rgb):
                c = int(colours[name], 16)
                return sum((x - ((c >> s) & 255)) ** 2 for x, s in zip(rgb, (16, 8, 0)))

            assert min(colours, key=dist) == seg["topic"], (video_id, seg)


# ---------------------------------------------------------------------------------------------
# What ffprobe and webrtcvad see
# ---------------------------------------------------------------------------------------------


def test_kinetics_layout_and_csvs(corpus, truth):
    from training.eval.benchmarks import read_kinetics

    files = truth["files"]["kinetics"]
    assert len(files) == 8 * 2  # 8 topics x 2 clips: 1 training + 1 validation each
    annotations = corpus / "kinetics" / "annotations"
    rows = {}
    for split, name in (("train", "train.csv"), ("val", "validate.csv")):
        with (annotations / name).open(newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames) == KINETICS_COLUMNS
            rows[split] = list(reader)
        assert len(rows[split]) == 8 and {r["split"] for r in rows[split]} == {split}
        for r in rows[split]:
            start, end = int(r["time_start"]), int(r["time_end"])
            assert end - start == 10 and YT_ID.match(r["youtube_id"])
            # The download scripts' layout: <label>/<YTID>_<start:06d>_<end:06d>.mp4
            rel = f"{split}/{r['label']}/{kinetics_file_name(r['youtube_id'], start, end)}"
            assert re.fullmatch(r".+_\d{6}_\d{6}\.mp4", rel)
            assert (corpus / "kinetics" / "videos" / rel).is_file(), rel
            entry = files[Path(rel).stem]
            assert entry["label"] == entry["topic"] == r["label"] and entry["split"] == split
    topics = {t["name"] for t in truth["topics"]}
    assert {r["label"] for r in rows["train"]} == {r["label"] for r in rows["val"]} == topics
    cs = read_kinetics(annotations / "train.csv", annotations / "validate.csv",
                       corpus / "kinetics" / "videos")  # fmt: skip
    assert cs.errors == [] and len(cs.train) == len(cs.test) == 8 and "car repair" in cs.classes


def test_class_names_are_words_the_captions_use(corpus, truth, captions):
    """Zero-shot classification by class name needs the names in the caption vocabulary:
    every topic's name words are caption words, and each video's first caption names its
    activity, so every topic with a HowTo100M video has its class names in caption.json."""
    from training.eval.zeroshot import class_words

    said = {w for c in captions.values() for text in c["text"] for w in text.split()}
    seen = {truth["files"]["howto100m"][vid]["topic"] for vid in captions}
    for vid, c in captions.items():
        topic = truth["files"]["howto100m"][vid]["topic"]
        assert f" {topic} " in f" {c['text'][0]} ", (topic, c["text"][0])
    names = [f["class"] for f in truth["files"]["ucf101"].values()]
    names += [f["category"] for f in truth["files"]["esc50"].values()]
    names += [f["label"] for f in truth["files"]["kinetics"].values()]
    by_topic = {t["name"]: set(t["words"]) for t in truth["topics"]}
    for name in names:
        words = set(class_words(name).split())
        topic = next(t for t in by_topic if set(t.split()) == words)
        assert words <= by_topic[topic], name  # the topic's own words hold its name
        if topic in seen:
            assert words <= said, name


CODECS = {"ucf101": ["mp3", "mpeg4"], "esc50": ["pcm_s16le"], "webvid": ["h264"]}


def test_ffprobe_streams_and_durations(corpus, truth, captions):
    sizes, rates = set(), set()
    for kind, files in truth["files"].items():
        for name, entry in files.items():
            info = ffprobe(corpus / entry["path"])
            assert info["rc"] == 0, entry["path"]
            codecs = sorted(s["codec_name"] for s in info["streams"])
            assert codecs == CODECS.get(kind, ["aac", "h264"]), entry["path"]
            if kind == "esc50":
                (audio,) = info["streams"]
                assert (audio["sample_rate"], audio["channels"]) == ("44100", 1)
                assert float(info["format"]["duration"]) == 5.0
                continue
            video = next(s for s in info["streams"] if s["codec_type"] == "video")
            assert (video["width"], video["height"]) == (entry["width"], entry["height"])
            assert video["r_frame_rate"] == f"{entry['fps']}/1"
            duration = float(info["format"]["duration"])
            assert abs(duration - entry["duration"]) < 0.1, entry["path"]
            if kind == "howto100m":
                assert captions[name]["end"][-1] <= duration
            sizes.add((video["width"], video["height"]))
            rates.add(entry["fps"])
    assert len(sizes) >= 3 and len(rates) >= 2


def test_speech_is_where_the_captions_are(corpus, truth, captions):
    for vid, c in captions.items():
        flags = vad_flags(corpus / truth["files"]["howto100m"][vid]["path"])
        spans = list(zip(c["start"], c["end"]))
        inside, gaps = [], []
        for i, flag in enumerate(flags):
            t = (i + 0.5) * VAD_FRAME_S
            if any(s <= t < e for s, e in spans):
                inside.append(flag)
            # Leave a margin: webrtcvad hangs over a few frames after speech ends.
            elif not any(s - 0.1 <= t < e + 0.3 for s, e in spans):
                gaps.append(flag)
        assert sum(inside) / len(inside) > 0.8, vid
        assert sum(gaps) / len(gaps) < 0.2, vid
    for entry in truth["files"]["audioset"].values():
        flags = vad_flags(corpus / entry["path"])
        assert sum(flags) / len(flags) < 0.3, entry["path"]


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------

DETERMINISTIC_FILES = (
    "howto100m/caption.json",
    "audioset/segments.csv",
    "audioset/class_labels_indices.csv",
    "msrvtt/msrvtt_test.csv",
    "esc50/meta/esc50.csv",
    "youcook2/youcookii_val.csv",
    "ucf101/splits/trainlist01.txt",
    "kinetics/annotations/train.csv",
    "kinetics/annotations/validate.csv",
    "webvid/results_train.csv",
    "webvid/results_val.csv",
    "topics.json",
)


@pytest.fixture
def cli_main():
    """The real `vatt` entry point, every command registered."""
    from pipeline import cli

    return cli.main


def test_cli_run_reproduces_the_same_corpus(corpus, tmp_path, capsys, cli_main):
    out = tmp_path / "again"
    argv = ["sample-data", str(out), "--videos", "3", "--audioset-clips", "2"]
    argv += ["--msrvtt-videos", "2", "--seed", "0", "--workers", "1", "--no-progress"]
    argv += ["--ucf101-groups", "2", "--esc50-clips-per-class", "1", "--youcook2-videos", "2"]
    argv += ["--kinetics-clips-per-class", "2", "--webvid-clips", "2", "--webvid-pairs", "2"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "sample-data summary" in printed and "windows expected" in printed
    for rel in DETERMINISTIC_FILES:
        assert (out / rel).read_bytes() == (corpus / rel).read_bytes(), rel


def test_different_seed_gives_different_corpus(tmp_path):
    tiny = {"videos": 1, "audioset_clips": 1, "msrvtt_videos": 1, "min_video_s": 6}
    tiny |= {"max_video_s": 8, "msrvtt_min_s": 5, "msrvtt_max_s": 6, "audioset_clip_s": 4}
    tiny |= {"ucf101_groups": 2, "ucf101_max_s": 4, "esc50_clips_per_class": 1}
    tiny |= {"youcook2_videos": 1, "youcook2_segment_max_s": 5}
    tiny |= {"kinetics_clips_per_class": 2, "kinetics_clip_s": 4}
    tiny |= {"webvid_clips": 2, "webvid_pairs": 2}
    for seed in (0, 1):
        generate_sample_corpus(tmp_path / str(seed), SampleCorpusConfig(**tiny, seed=seed))
    # The label list and UCF101's names (class, group, clip) do not depend on the seed.
    for rel in DETERMINISTIC_FILES:
        if rel not in ("audioset/class_labels_indices.csv", "ucf101/splits/trainlist01.txt"):
            assert (tmp_path / "0" / rel).read_bytes() != (tmp_path / "1" / rel).read_bytes()


def test_plans_are_balanced_and_unique():
    plans = make_plans(SampleCorpusConfig())
    names = [p.name for p in plans]
    assert len(names) == len(set(names))
    howto_topics = [p.topic for p in plans if p.kind == "howto100m"]
    assert sorted(set(howto_topics)) == list(range(8))
    assert max(map(howto_topics.count, set(howto_topics))) == 3


@pytest.mark.parametrize(
    "extra",
    [
        ["--videos", "-1"],
        ["--workers", "0"],
        ["--videos", "0", "--audioset-clips", "0", "--msrvtt-videos", "0"]
        + ["--ucf101-groups", "0", "--esc50-clips-per-class", "0", "--youcook2-videos", "0"]
        + ["--kinetics-clips-per-class", "0", "--webvid-clips", "0", "--webvid-pairs", "0"],
        ["--ucf101-groups", "1"],
        ["--kinetics-clips-per-class", "1"],
    ],
)
def test_cli_bad_values_exit_2_with_one_line(tmp_path, capsys, cli_main, extra):
    out = tmp_path / "never"
    assert cli_main(["sample-data", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("vatt sample-data: error:")
    assert not out.exists()


@pytest.mark.parametrize("argv", [["sample-data"], ["sample-data", "x", "--videos", "abc"]])
def test_cli_unparsable_args_exit_2_with_one_line(capsys, cli_main, argv):
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_refuses_a_non_empty_folder(tmp_path, capsys, cli_main):
    (tmp_path / "mine.txt").write_text("keep me")
    assert cli_main(["sample-data", str(tmp_path), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_overwrite_removes_only_what_the_generator_wrote(tmp_path):
    (tmp_path / "howto100m" / "videos").mkdir(parents=True)
    (tmp_path / "howto100m" / "videos" / "old.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "topics.json").write_text(json.dumps({"generator": GENERATOR}))
    with pytest.raises(ValueError, match="not empty"):
        prepare_output_dir(tmp_path, overwrite=False)
    prepare_output_dir(tmp_path, overwrite=True)
    assert not (tmp_path / "howto100m" / "videos" / "old.mp4").exists()
    assert not (tmp_path / "topics.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "bad",
    [
        {"videos": -1},
        {"workers": 0},
        {"num_topics": 9},
        {"min_video_s": 30, "max_video_s": 20},
        {"caption_min_words": 9, "caption_max_words": 8},
        {"seed": -3},
        {"ucf101_groups": 1},
        {"youcook2_max_segments": 3, "num_topics": 2},
        {"esc50_clips_per_class": -1},
        {"kinetics_clips_per_class": 1},
        {"kinetics_clip_s": 0},
    ],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        SampleCorpusConfig(**bad)


# ---------------------------------------------------------------------------------------------
# Deliberately bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_inputs(tmp_path):
    began = time.perf_counter()
    paths = make_bad_inputs(tmp_path)
    assert time.perf_counter() - began < 10
    assert set(paths) == set(BAD_INPUT_KINDS)
    for kind in ("truncated", "empty", "random_bytes"):
        assert ffprobe(paths[kind])["rc"] != 0, kind
    assert paths["empty"].stat().st_size == 0
    streams = {
        k: [s["codec_type"] for s in ffprobe(paths[k])["streams"]]
        for k in ("no_audio", "audio_only", "too_short")
    }
    assert streams["no_audio"] == ["video"]
    assert streams["audio_only"] == ["audio"]
    assert sorted(streams["too_short"]) == ["audio", "video"]
    short = float(ffprobe(paths["too_short"])["format"]["duration"])
    assert 1.4 < short < WINDOW_S


def test_reuse_keeps_a_finished_corpus_and_regenerates_an_interrupted_one(tmp_path, cli_main):
    """`make demo` runs `sample-data --reuse`: a second run must succeed without rewriting."""
    out = tmp_path / "corpus"
    tiny = ["--videos", "1", "--audioset-clips", "1", "--msrvtt-videos", "1", "--ucf101-groups"]
    tiny += ["0", "--esc50-clips-per-class", "0", "--youcook2-videos", "0"]
    tiny += ["--kinetics-clips-per-class", "0", "--webvid-clips", "0", "--webvid-pairs", "0"]
    tiny += ["--no-progress", "--reuse"]
    assert cli_main(["sample-data", str(out), *tiny]) == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}
    config = SampleCorpusConfig(videos=1, audioset_clips=1, msrvtt_videos=1, ucf101_groups=0)
    config = dataclasses.replace(
        config, esc50_clips_per_class=0, youcook2_videos=0, kinetics_clips_per_class=0
    )
    config = dataclasses.replace(config, webvid_clips=0, webvid_pairs=0)
    again = generate_sample_corpus(out, config, reuse=True)
    assert again.reused and again.howto_videos == 1 and again.captions > 0
    assert {p: p.stat().st_mtime_ns for p in files} == stamps  # nothing rewritten
    # Interrupted: topics.json (written last) is missing -> regenerated, same files.
    (out / "topics.json").unlink()
    video = next((out / "howto100m" / "videos").iterdir())
    video.unlink()
    redone = generate_sample_corpus(out, config, reuse=True)
    assert not redone.reused
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    # Other settings -> regenerated, not silently reused.
    other = generate_sample_corpus(out, dataclasses.replace(config, seed=1), reuse=True)
    assert not other.reused and json.loads((out / "topics.json").read_text())["seed"] == 1
    # A folder that is not ours is never touched.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing"):
        generate_sample_corpus(tmp_path / "mine", config, reuse=True)
