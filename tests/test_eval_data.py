"""Benchmark readers and audio/segment decoding (training/eval/benchmarks.py, media.py) on real-format files.

The files come from the sample corpus generator (real ffmpeg: XviD AVIs, WAVs, H.264 mp4s);
bad lines are appended to copies of its lists. No Ray here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_clip

from pipeline.sample_data.corpus import SampleCorpusConfig, generate_sample_corpus
from training.eval.benchmarks import (
    esc50_fold,
    read_esc50,
    read_kinetics,
    read_ucf_split,
    read_youcook2,
)
from training.eval.media import VideoDecodeError, decode_audio_windows, decode_windows

TOPICS = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Only the labelled sets, 3 topics: 6 UCF clips, 15 ESC-50 sounds, 2 YouCook2 videos."""
    out = tmp_path_factory.mktemp("eval_data") / "corpus"
    config = SampleCorpusConfig(
        **dict(videos=0, audioset_clips=0, msrvtt_videos=0, num_topics=TOPICS),
        **dict(ucf101_groups=2, ucf101_max_s=5, esc50_clips_per_class=5, youcook2_videos=2),
        kinetics_clips_per_class=0,  # the Kinetics reader is tested on its own files below
    )
    generate_sample_corpus(out, config)
    return out


@pytest.fixture(scope="module")
def truth(corpus) -> dict:
    return json.loads((corpus / "topics.json").read_text())


# ---------------------------------------------------------------------------------------------
# UCF101 split files
# ---------------------------------------------------------------------------------------------


def test_ucf_split_of_the_sample_corpus(corpus, truth):
    for split in (1, 2):
        cs = read_ucf_split(corpus / "ucf101" / "splits", corpus / "ucf101" / "videos", split)
        assert cs.classes == ["Baking", "Gardening", "Guitar"] and cs.errors == []
        assert len(cs.train) == len(cs.test) == TOPICS
        assert {i.key for i in cs.train}.isdisjoint({i.key for i in cs.test})
        for item in cs.train + cs.test:
            assert item.path.is_absolute() and item.path.is_file()
            assert f"_g{split:02d}_" in item.key or item in cs.train
            entry = truth["files"]["ucf101"][item.path.stem]
            assert cs.classes[item.label] == entry["class"] == item.key.split("/")[0]


def test_ucf_bad_lines_are_errors_and_skipped(corpus, tmp_path):
    splits = tmp_path / "splits"
    shutil.copytree(corpus / "ucf101" / "splits", splits)
    with (splits / "trainlist01.txt").open("a", newline="") as f:
        f.write("Juggling/v_Juggling_g09_c01.avi 2\r\n")  # line 4: unknown class
        f.write("Baking/v_Baking_g09_c01.avi 1\r\n")  # line 5: no such file
        f.write("Baking/v_Baking_g02_c01.avi 3\r\n")  # line 6: label of another class
        f.write("v_Baking_g02_c01.avi\r\n")  # line 7: no class folder
        f.write("Baking/v_Baking_g02_c01.avi 1\r\n")  # line 8: twice
        f.write("\r\n")  # blank lines are fine
    with (splits / "testlist01.txt").open("a", newline="") as f:
        f.write("Guitar/v_Guitar_g01_c09.avi\r\n")  # line 4: no such file
    cs = read_ucf_split(splits, corpus / "ucf101" / "videos", 1)
    assert len(cs.train) == len(cs.test) == TOPICS
    missing = corpus.absolute() / "ucf101/videos/Baking/v_Baking_g09_c01.avi"
    assert cs.errors == [
        "trainlist01.txt:4: unknown class 'Juggling' (not in classInd.txt)",
        f"trainlist01.txt:5: video {missing} not found",
        "trainlist01.txt:6: label 3 is 'Guitar', the folder 'Baking'",
        "trainlist01.txt:7: expected '<Class>/<file> [label]', got 'v_Baking_g02_c01.avi'",
        "trainlist01.txt:8: Baking/v_Baking_g02_c01.avi listed twice",
        f"testlist01.txt:4: video {corpus.absolute()}/ucf101/videos/Guitar/v_Guitar_g01_c09.avi"
        " not found",
    ]


def test_ucf_unreadable_or_empty_lists_raise_naming_the_file(corpus, tmp_path):
    videos = corpus / "ucf101" / "videos"
    with pytest.raises(ValueError, match=r"trainlist03\.txt: cannot read"):
        read_ucf_split(corpus / "ucf101" / "splits", videos, 3)  # 2 groups: no split 3
    with pytest.raises(ValueError, match="numbered from 1"):
        read_ucf_split(corpus / "ucf101" / "splits", videos, 0)
    shutil.copytree(corpus / "ucf101" / "splits", tmp_path / "s")
    (tmp_path / "s" / "testlist01.txt").write_text("Nope/v_a.avi\n")
    with pytest.raises(ValueError, match=r"testlist01\.txt: no usable entries.*unknown class"):
        read_ucf_split(tmp_path / "s", videos, 1)


# ---------------------------------------------------------------------------------------------
# ESC-50
# ---------------------------------------------------------------------------------------------


def test_esc50_and_its_folds(corpus, truth):
    classes, items, errors = read_esc50(
        corpus / "esc50" / "meta" / "esc50.csv", corpus / "esc50" / "audio"
    )
    assert classes == ["baking", "gardening", "guitar"] and errors == []
    assert len(items) == 5 * TOPICS
    for item, fold in items:
        entry = truth["files"]["esc50"][item.path.stem]
        assert (fold, classes[item.label]) == (entry["fold"], entry["category"])
    seen = set()
    for fold in range(1, 6):
        cs = esc50_fold(classes, items, fold)
        # One clip per class per fold: test = every class once, train = the other 4 folds.
        assert sorted(i.label for i in cs.test) == list(range(TOPICS))
        assert len(cs.train) == 4 * TOPICS and not {i.key for i in cs.train} & {
            i.key for i in cs.test
        }
        seen |= {i.key for i in cs.test}
    assert len(seen) == len(items)
    with pytest.raises(ValueError, match=r"fold 6: .*\(folds: 1, 2, 3, 4, 5\)"):
        esc50_fold(classes, items, 6)


def test_esc50_bad_rows(corpus, tmp_path):
    csv_path = tmp_path / "esc50.csv"
    good = (corpus / "esc50" / "meta" / "esc50.csv").read_text().splitlines()
    first = good[1].split(",")  # a real row: filename,fold,target,category,...
    bad = [
        "1-999-A-0.wav,1,0,baking,False,999,A",  # line n+1: no such file
        f"{first[0]},x,0,baking,False,1,A",  # bad fold
        f"{first[0]},1,-2,baking,False,1,A",  # bad target
        f"{first[0]},1,{first[2]},,False,1,A",  # empty category
        f"{first[0]},1,{first[2]},dogs,False,1,A",  # another category for the target
        ",1,0,baking,False,1,A",  # empty filename
    ]
    csv_path.write_text("\n".join(good + bad) + "\n")
    classes, items, errors = read_esc50(csv_path, corpus / "esc50" / "audio")
    assert len(items) == 5 * TOPICS and len(classes) == TOPICS
    n = len(good) + 1
    missing = (corpus / "esc50" / "audio" / "1-999-A-0.wav").absolute()
    assert errors == [
        f"esc50.csv:{n}: audio {missing} not found",
        f"esc50.csv:{n + 1}: {first[0]}: fold 'x' is not a number >= 1",
        f"esc50.csv:{n + 2}: {first[0]}: target '-2' is not a number >= 0",
        f"esc50.csv:{n + 3}: {first[0]}: empty category",
        f"esc50.csv:{n + 4}: {first[0]}: target {first[2]} is '{first[3]}' on an earlier row, "
        "'dogs' here",
        f"esc50.csv:{n + 5}: empty filename",
    ]
    (tmp_path / "cols.csv").write_text("filename,fold,category\n")
    with pytest.raises(ValueError, match=r"cols\.csv: missing column\(s\) target"):
        read_esc50(tmp_path / "cols.csv", corpus / "esc50" / "audio")


# ---------------------------------------------------------------------------------------------
# YouCook2
# ---------------------------------------------------------------------------------------------


def test_youcook2_segments_and_bad_rows(corpus, truth, tmp_path):
    csv_path = corpus / "youcook2" / "youcookii_val.csv"
    videos = corpus / "youcook2" / "videos"
    segments, errors = read_youcook2(csv_path, videos)
    expected = [
        (vid, s["start"], s["end"])
        for vid, e in truth["files"]["youcook2"].items()
        for s in e["segments"]
    ]
    assert [(s.video_id, s.start, s.end) for s in segments] == expected and errors == []
    assert all(s.path.is_absolute() and s.text and s.task.isdigit() for s in segments)
    vid = segments[0].video_id
    lines = csv_path.read_text().splitlines()
    lines += [
        f"9,4,101,,{vid}",  # empty text
        f"4,4,101,empty span,{vid}",
        f"x,0,101,not a number,{vid}",
        "9,4,101,no such video,AAAAAAAAAAA",
        lines[1],  # the first segment again
    ]
    (tmp_path / "yc.csv").write_text("\n".join(lines) + "\n")
    again, errors = read_youcook2(tmp_path / "yc.csv", videos)
    assert again == segments
    n = len(lines) - 4
    first = segments[0]
    assert errors == [
        f"yc.csv:{n}: {vid}_4_9: empty text",
        f"yc.csv:{n + 1}: {vid}_4_4: bad segment start='4' end='4'",
        f"yc.csv:{n + 2}: {vid}_0_x: bad segment start='0' end='x'",
        f"yc.csv:{n + 3}: AAAAAAAAAAA_4_9: video {videos.absolute()}/AAAAAAAAAAA.* not found",
        f"yc.csv:{n + 4}: {first.key}: segment listed twice",
    ]


def test_segment_windows_come_from_inside_the_segment(corpus, truth):
    """Two segments of one video show different topics: each one's windows have its own
    topic's background colour (nearest of the topics' colours)."""
    colours = {t["name"]: int(t["colour"], 16) for t in truth["topics"]}
    segments, _ = read_youcook2(
        corpus / "youcook2" / "youcookii_val.csv", corpus / "youcook2" / "videos"
    )
    topic_of = {
        (vid, s["start"]): s["topic"]
        for vid, e in truth["files"]["youcook2"].items()
        for s in e["segments"]
    }
    for seg in segments:
        clips = decode_windows(
            seg.path, num_windows=2, clip_seconds=3.2, frames=4, height=32, width=32,
            start=seg.start, end=seg.end,
        )  # fmt: skip
        assert clips.shape == (2, 4, 32, 32, 3)
        rgb = clips.float().mean(dim=(0, 1, 2, 3)).tolist()
        nearest = min(
            colours,
            key=lambda n: sum(
                (x - ((colours[n] >> s) & 255)) ** 2 for x, s in zip(rgb, (16, 8, 0))
            ),
        )
        assert nearest == topic_of[(seg.video_id, seg.start)], seg.key
    late = segments[0]
    with pytest.raises(VideoDecodeError, match=r"no video frames decoded in \[500, 510\] s"):
        decode_windows(
            late.path, num_windows=1, clip_seconds=3.2, frames=4, height=32, width=32,
            start=500, end=510,
        )  # fmt: skip
    with pytest.raises(VideoDecodeError, match="empty or negative"):
        decode_windows(
            late.path, num_windows=1, clip_seconds=3.2, frames=4, height=32, width=32,
            start=5, end=5,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Audio windows
# ---------------------------------------------------------------------------------------------


def _pcm(path: Path, rate: int) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1"]
    out = subprocess.run([*cmd, "-ar", str(rate), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i2").astype(np.float32) / 32768.0


def test_audio_windows_are_uniformly_spaced_mono_at_the_rate(corpus):
    wav = next((corpus / "esc50" / "audio").iterdir())
    rate, samples = 16000, 16000 * 2  # 2 s windows of a 5 s clip
    windows = decode_audio_windows(wav, samples=samples, rate=rate, num_windows=3)
    assert windows.shape == (3, samples) and windows.dtype == np.float32
    assert 0 < np.abs(windows).max() <= 1.0
    whole = _pcm(wav, rate)
    assert len(whole) == 5 * rate
    # First window at the start, last one ending at the end, the middle one centred.
    for w, start in enumerate((0, (len(whole) - samples) // 2, len(whole) - samples)):
        np.testing.assert_array_equal(windows[w], whole[start : start + samples])
    # The [1, 3] s span only; a clip shorter than a window is padded with silence.
    span = decode_audio_windows(wav, samples=rate, rate=rate, num_windows=1, start=1, end=3)
    np.testing.assert_allclose(span[0], whole[int(1.5 * rate) : int(2.5 * rate)], atol=1e-4)
    padded = decode_audio_windows(wav, samples=6 * rate, rate=rate, num_windows=2)
    assert padded.shape == (2, 6 * rate)
    np.testing.assert_array_equal(padded[0, : len(whole)], whole)
    assert not padded[:, len(whole) :].any()


def test_audio_decode_errors_are_one_line_reasons(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found"):
        decode_audio_windows(tmp_path / "none.wav", samples=100, rate=8000, num_windows=1)
    silent_video = make_clip(tmp_path / "video_only.mp4", 1.0, size="64x48", audio=None)
    with pytest.raises(VideoDecodeError, match="^no audio stream$"):
        decode_audio_windows(silent_video, samples=100, rate=8000, num_windows=1)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(VideoDecodeError) as e:
        decode_audio_windows(junk, samples=100, rate=8000, num_windows=1)
    assert "\n" not in str(e.value) and str(e.value)


# ---------------------------------------------------------------------------------------------
# Kinetics CSVs and clip layouts (the reader only lists files: empty ones do)
# ---------------------------------------------------------------------------------------------

K400_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"  # K400 adds is_cc


def _touch(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_kinetics_clips_are_found_in_every_common_layout(tmp_path):
    videos = tmp_path / "videos"
    a = _touch(videos, "train", "abseiling", "AAAAAAAAAAA_000014_000024.mp4")  # split/label
    b = _touch(videos, "playing guitar", "BBBBBBBBBBB_000001_000011.mkv")  # spaces, .mkv
    c = _touch(videos, "playing_guitar", "CCCCCCCCCCC_000000_000010.mp4")  # '_' for spaces
    d = _touch(videos, "DDDDDDDDDDD_000100_000110.webm")  # flat
    e = _touch(videos, "val", "abseiling", "-EEEEEEEEEE_000005_000015.mp4")  # id with '-'
    _touch(videos, "other", "AAAAAAAAAAA_000014_000024.mp4")  # same stem elsewhere
    train = tmp_path / "train.csv"
    train.write_text(
        K400_HEADER + "abseiling,AAAAAAAAAAA,14,24,train,0\n"
        '"playing guitar",BBBBBBBBBBB,1,11,train,1\nplaying guitar,CCCCCCCCCCC,0.0,10,train,0\n'
    )
    val = tmp_path / "validate.csv"
    val.write_text(
        "label,youtube_id,time_start,time_end,split\r\n"  # K600/700: no is_cc; CRLF
        "playing guitar,DDDDDDDDDDD,100,110,val\r\nabseiling,-EEEEEEEEEE,5,15,val\r\n"
    )
    cs = read_kinetics(train, val, videos)
    assert cs.classes == ["abseiling", "playing guitar"] and cs.errors == []
    assert [(i.path, i.label) for i in cs.train] == [(a, 0), (b, 1), (c, 1)]
    assert [(i.path, i.label) for i in cs.test] == [(d, 1), (e, 0)]
    assert cs.train[0].key == "train/abseiling/AAAAAAAAAAA_000014_000024.mp4"
    # Zero-shot needs no training CSV: classes from the tested one.
    only = read_kinetics(None, val, videos)
    assert only.classes == ["abseiling", "playing guitar"] and only.train == []


def test_kinetics_bad_rows_are_errors_and_skipped(tmp_path):
    videos = tmp_path / "videos"
    _touch(videos, "abseiling", "AAAAAAAAAAA_000014_000024.mp4")
    _touch(videos, "abseiling", "BBBBBBBBBBB_000000_000010.mp4")
    _touch(videos, "juggling", "CCCCCCCCCCC_000000_000010.mp4")
    train = tmp_path / "train.csv"
    train.write_text(
        K400_HEADER + "abseiling,AAAAAAAAAAA,14,24,train,0\n"  # line 2: fine
        "abseiling,ZZZZZZZZZZZ,0,10,train,0\n"  # line 3: no such clip
        "abseiling,AAAAAAAAAAA,14,24,train,0\n"  # line 4: twice
        "abseiling,BBBBBBBBBBB,ten,10,train,0\n"  # line 5: bad time
        "abseiling,BBBBBBBBBBB,10,10,train,0\n"  # line 6: empty span
        "abseiling,,0,10,train,0\n"  # line 7: no id
    )
    test = tmp_path / "test.csv"
    test.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        ",BBBBBBBBBBB,0,10,test\n"  # line 2: Kinetics test CSVs are unlabelled
        "juggling,CCCCCCCCCCC,0,10,test\n"  # line 3: not a training class
        "abseiling,BBBBBBBBBBB,0,10,test\n"  # line 4: fine
    )
    cs = read_kinetics(train, test, videos)
    assert [i.key for i in cs.train] == ["abseiling/AAAAAAAAAAA_000014_000024.mp4"]
    assert [i.key for i in cs.test] == ["abseiling/BBBBBBBBBBB_000000_000010.mp4"]
    missing = videos.absolute() / "abseiling" / "ZZZZZZZZZZZ_000000_000010.mp4"
    assert cs.errors == [
        f"train.csv:3: video {missing} not found (nor ZZZZZZZZZZZ_000000_000010.* elsewhere)",
        "train.csv:4: AAAAAAAAAAA_000014_000024 listed twice",
        "train.csv:5: BBBBBBBBBBB: bad time_start='ten' time_end='10' (whole seconds, start < end)",
        "train.csv:6: BBBBBBBBBBB: bad time_start='10' time_end='10' (whole seconds, start < end)",
        "train.csv:7: empty youtube_id",
        "test.csv:2: BBBBBBBBBBB_000000_000010: no label (use a labelled CSV, e.g. validate.csv)",
        "test.csv: juggling/CCCCCCCCCCC_000000_000010.mp4: label 'juggling' is not a training class",
    ]
    (tmp_path / "nolabel.csv").write_text("youtube_id,time_start,time_end\nAAAAAAAAAAA,14,24\n")
    with pytest.raises(ValueError, match=r"nolabel.csv: missing column\(s\) label"):
        read_kinetics(None, tmp_path / "nolabel.csv", videos)
    (tmp_path / "none.csv").write_text("label,youtube_id,time_start,time_end\nx,QQQQQQQQQQQ,0,10\n")
    with pytest.raises(ValueError, match="none.csv: no usable entries"):
        read_kinetics(None, tmp_path / "none.csv", videos)
    with pytest.raises(ValueError, match="no such video folder"):
        read_kinetics(None, test, tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# Multi-view decoding: windows x spatial crops
# ---------------------------------------------------------------------------------------------


def _three_colour_clip(path: Path, stack: str) -> Path:
    """4 s of red | green | blue thirds side by side (hstack) or top to bottom (vstack)."""
    inputs = []
    for colour in ("red", "green", "blue"):
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s=64x64:r=10:d=4"]
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", *inputs, "-filter_complex",
         f"[0:v][1:v][2:v]{stack}=inputs=3", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv444p", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("stack", ["hstack", "vstack"])
def test_spatial_crops_go_along_the_long_side_of_each_window(tmp_path, stack):
    clip = _three_colour_clip(tmp_path / f"{stack}.mp4", stack)
    views = decode_windows(
        clip, num_windows=2, clip_seconds=1.6, frames=4, height=32, width=32, crops=3
    )
    assert views.shape == (6, 4, 32, 32, 3) and views.dtype == torch.uint8
    # Crops vary fastest: left (top), centre, right (bottom) of window 1, then of window 2.
    dominant = [int(v.float().mean(dim=(0, 1, 2)).argmax()) for v in views]
    assert dominant == [0, 1, 2, 0, 1, 2]  # red, green, blue channels
    (centre,) = decode_windows(
        clip, num_windows=1, clip_seconds=1.6, frames=4, height=32, width=32
    )  # the default single view: the centre crop
    assert int(centre.float().mean(dim=(0, 1, 2)).argmax()) == 1
