"""Real-world media that used to come out silently wrong, built for real with ffmpeg: streams
that start at different times (edit lists, a delayed track), a second audio language,
non-square pixels, a banner, a live-muxed WebM without a duration, file names that look like
ffmpeg options or protocols, ids that differ only in characters keys cannot hold.

Timing is checked with a clock in the content, not by shapes: the picture flashes white and
the audio beeps at the same instants (EVENTS, on the file's timeline); a decoded window must
show each flash and each beep where the file has it.
"""

from __future__ import annotations

import io
import json
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ffmpeg, make_clip
from PIL import Image

from preprocessing.decode import MediaRange, decode_span
from preprocessing.probe import probe

EVENTS = (2.0, 3.5, 6.0)  # file-time seconds of a 0.3 s white flash and 1 kHz beep
FPS, RATE = 10, 16000


def _on(delay: float) -> str:
    """ffmpeg expression: true during every event, in a stream that starts `delay` late."""
    return "+".join(f"between(t,{e - delay:g},{e - delay + 0.3:g})" for e in EVENTS)


def events_clip(path: Path, *, audio_delay: float = 0.0, video_delay: float = 0.0) -> Path:
    """8 s of black video flashing white at EVENTS and a tone beeping at EVENTS, one of the two
    streams starting late (`-itsoffset`: an mp4 edit list, a Matroska timestamp offset)."""
    video = (
        f"color=c=black:s=64x48:r=25:d={8 - video_delay:g},"
        f"drawbox=c=white:t=fill:enable='{_on(video_delay)}'"
    )
    audio = (
        f"sine=f=1000:r=48000:d={8 - audio_delay:g},volume=volume='{_on(audio_delay)}':eval=frame"
    )
    args = ["-itsoffset", f"{video_delay:g}", "-f", "lavfi", "-i", video]
    args += ["-itsoffset", f"{audio_delay:g}", "-f", "lavfi", "-i", audio]
    codec = "libopus" if path.suffix == ".mkv" else "aac"
    ffmpeg(*args, "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", codec, str(path))  # fmt: skip
    return path


def onsets(on: np.ndarray, rate: float, start: float) -> list[float]:
    """Times (s, file timeline) where a boolean per-step signal switches on."""
    rises = np.flatnonzero(np.diff(np.concatenate([[False], on]).astype(int)) == 1)
    return [start + i / rate for i in rises]


def flash_times(video: np.ndarray, start: float, fps: float) -> list[float]:
    return onsets(video.reshape(len(video), -1).mean(axis=1) > 128, fps, start)  # [T,H,W,3]


def beep_times(audio: np.ndarray, start: float, rate: int) -> list[float]:
    block = rate // 100  # 10 ms
    a = audio[: len(audio) // block * block].astype(np.float64).reshape(-1, block)
    return onsets(np.sqrt((a**2).mean(axis=1)) > 1000, 100, start)


def jpegs_to_array(frames: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames])


def in_window(start: float, end: float) -> list[float]:
    return [e for e in EVENTS if start <= e < end - 0.3]


def assert_in_sync(video, audio, start: float, end: float, fps: float, rate: int) -> None:
    expected = in_window(start, end)
    flashes, beeps = flash_times(video, start, fps), beep_times(audio, start, rate)
    assert len(flashes) == len(beeps) == len(expected), (flashes, beeps, expected)
    for want, seen in zip(expected, flashes):
        assert abs(seen - want) <= 1 / fps + 1e-6, ("flash", flashes, expected)
    for want, heard in zip(expected, beeps):
        assert abs(heard - want) <= 0.03, ("beep", beeps, expected)


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("real_media")
    events_clip(d / "audio_late.mp4", audio_delay=1.5)
    events_clip(d / "video_late.mkv", video_delay=1.0)
    # A second language track that is the default one (the first is commentary, say).
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=f=440:r=48000:d=4", "-f", "lavfi", "-i", "sine=f=2000:r=48000:d=4",
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast",
        "-c:a", "aac", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=deu",
        "-disposition:a:0", "0", "-disposition:a:1", "default", str(d / "two_audio.mp4"),
    )  # fmt: skip
    # Anamorphic (a DVD's 16:9): 320x240 stored, 4:3 pixels, so 427x240 displayed.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4", "-vf", "setsar=4/3",
           "-c:v", "libx264", "-preset", "ultrafast", str(d / "anamorphic.mp4"))  # fmt: skip
    make_clip(d / "banner.mp4", 4, size="400x16")
    with open(d / "live.webm", "wb") as out:  # muxed to a pipe: no duration in the header
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4",
             "-f", "lavfi", "-i", "sine=f=440:r=48000:d=4", "-c:v", "libvpx", "-c:a", "libopus",
             "-f", "webm", "pipe:1"],
            stdout=out, check=True,
        )  # fmt: skip
    make_clip(d / "-dash.mp4", 4)
    make_clip(d / "part1.mp4", 4)
    make_clip(d / "part2.mp4", 4)
    make_clip(d / "concat:part1.mp4|part2.mp4", 6)
    return d


def decode_whole(path: Path, start: float, duration: float, **kw):
    facts = probe(str(path))
    return facts, decode_span(
        MediaRange(str(path), start, duration, seek_from=facts.video_start), fps=FPS,
        short_side=48, sample_rate=RATE, qscale=5, has_audio=facts.has_audio,
        video_stream=facts.video_stream, audio_stream=facts.audio_stream, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["audio_late.mp4", "video_late.mkv"])
@pytest.mark.parametrize("start", [0.0, 1.2, 3.0])
def test_audio_and_video_follow_the_files_timeline(media, name, start):
    facts, span = decode_whole(media / name, start, 4.0)
    late = facts.audio_start if name == "audio_late.mp4" else facts.video_start
    assert late == pytest.approx(1.5 if name == "audio_late.mp4" else 1.0, abs=0.05)
    video = jpegs_to_array(span.frames)
    assert len(video) == 40 and len(span.audio) == 4 * RATE
    assert_in_sync(video, span.audio, start, start + 4.0, FPS, RATE)


def test_the_default_audio_stream_is_decoded_alone(media):
    facts, span = decode_whole(media / "two_audio.mp4", 0.0, 4.0)
    assert (facts.audio_streams, facts.audio_stream, facts.audio_language) == (2, 2, "deu")
    assert len(span.audio) == 4 * RATE  # one track, not two interleaved
    assert dominant_hz(span.audio, RATE) == pytest.approx(2000, abs=5)


def test_frames_are_scaled_in_display_pixels_and_the_long_side_is_bounded(media):
    facts, span = decode_whole(media / "anamorphic.mp4", 0.0, 1.0)
    assert facts.sar == pytest.approx(4 / 3) and (facts.width, facts.height) == (320, 240)
    assert Image.open(io.BytesIO(span.frames[0])).size == (86, 48)  # 16:9, not 4:3 (64x48)
    _, span = decode_whole(media / "banner.mp4", 0.0, 1.0, max_aspect=2.5)
    assert Image.open(io.BytesIO(span.frames[0])).size == (120, 48)  # not 1200x48


def test_a_header_without_duration_is_probed_from_its_packets(media):
    head = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_format", "-of", "json", str(media / "live.webm")],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert "duration" not in head["format"]
    assert probe(str(media / "live.webm")).duration == pytest.approx(4.0, abs=0.1)


def test_names_that_look_like_options_or_protocols_are_files(media, monkeypatch):
    monkeypatch.chdir(media)  # relative names, as a folder given as "." yields them
    assert probe("-dash.mp4").duration == pytest.approx(4.0, abs=0.1)
    # Read as ffmpeg's concat protocol this would be part1 + part2 = 8 s.
    assert probe("concat:part1.mp4|part2.mp4").duration == pytest.approx(6.0, abs=0.1)
    span = decode_span(
        MediaRange("concat:part1.mp4|part2.mp4", 5.0, 1.0), fps=FPS, short_side=48,
        sample_rate=RATE, qscale=5, has_audio=True,
    )  # fmt: skip
    assert len(span.frames) == 10


# --- The whole job over such a corpus ------------------------------------------------------

NFD = unicodedata.normalize("NFD", "vidéo")


@pytest.fixture(scope="module")
def corpus_run(media, tmp_path_factory, ray_local):
    """Every odd file above plus ids that collide once sanitised, two files for one id and
    other containers, preprocessed as a HowTo100M corpus."""
    from preprocessing.config import PreprocessConfig
    from preprocessing.jobs import run_preprocess

    v = tmp_path_factory.mktemp("odd_corpus") / "videos"
    v.mkdir()
    for f in media.iterdir():
        if not f.name.startswith("part"):
            (v / f.name).symlink_to(f)
    for name in ("my video.mp4", "my_video.mp4", f"{NFD}.mp4", "dup.mp4", "dup.mkv"):
        make_clip(v / name, 4)
    make_clip(v / "phone.mov", 4, size="240x320")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4", "-c:v", "mpeg4",
           str(v / "old.avi"))  # fmt: skip
    events = {"start": [1.5, 5.5], "end": [2.5, 6.5], "text": ["first beep", "last beep"]}
    one = {"start": [1.0], "end": [2.0], "text": ["hello"]}
    ids = ["two_audio", "anamorphic", "banner", "live", "-dash", "concat:part1.mp4|part2"]
    ids += ["my video", "my_video", "vidéo", "dup", "phone", "old"]
    captions = {"audio_late": events, "video_late": events, **{i: one for i in ids}}
    (v.parent / "caption.json").write_text(json.dumps(captions, ensure_ascii=False))
    cfg = PreprocessConfig(
        source="howto100m", videos=str(v), captions=str(v.parent / "caption.json"),
        out=str(v.parent / "out"), short_side=96, sample_rate=16000,
    )  # fmt: skip
    summary = run_preprocess(cfg, show_progress=False)
    return cfg, summary, captions


def read_samples(out: str) -> list[dict]:
    from preprocessing.shard_format import decode_sample, iter_samples, list_shards

    return [decode_sample(s) for s in iter_samples(list_shards(out))]


def test_every_odd_input_comes_out_right(corpus_run):
    cfg, summary, captions = corpus_run
    samples = read_samples(cfg.out)
    by_id: dict[str, list[dict]] = {}
    for s in samples:
        by_id.setdefault(s["meta"]["video_id"], []).append(s)
    assert sorted(by_id) == sorted(captions)  # every id gave samples
    keys = [s["key"] for s in samples]
    assert len(keys) == len(set(keys)) == summary["samples_written"]
    assert {"my_video_00000000"} <= set(keys)
    (spaced,) = by_id["my video"]
    assert spaced["key"].startswith("my_video-") and spaced["key"] != "my_video_00000000"
    for vid in ("audio_late", "video_late"):  # in sync through the whole job
        for s in by_id[vid]:
            m = s["meta"]
            assert_in_sync(s["video"], s["audio"], m["start"], m["end"], m["fps"], 16000)
    (two,) = by_id["two_audio"]
    assert two["meta"]["audio_stream"] == {"index": 2, "language": "deu", "streams": 2}
    assert dominant_hz(two["audio"], 16000) == pytest.approx(2000, abs=5)
    (ana,) = by_id["anamorphic"]
    assert (ana["meta"]["width"], ana["meta"]["height"]) == (170, 96)
    (banner,) = by_id["banner"]
    assert banner["video"].shape[1:3] == (96, 240)
    (phone,) = by_id["phone"]
    assert phone["video"].shape[1:3] == (128, 96)
    assert summary["errors"] == 0


def test_what_was_adjusted_is_recorded(corpus_run):
    cfg, _, _ = corpus_run
    rows = pq.read_table(Path(cfg.out) / "errors.parquet").to_pylist()
    notes = {(r["video_id"], r["reason"]) for r in rows if not r["fatal"]}
    assert ("dup", "2 files for one id: using dup.mp4, not dup.mkv") in notes
    assert any(
        v == "two_audio" and r.startswith("2 audio streams: using stream #2 (deu") for v, r in notes
    )
    assert any(v == "audio_late" and r.startswith("audio stream starts at 1.4") for v, r in notes)
    assert any(v == "video_late" and r.startswith("video stream starts at 1.0") for v, r in notes)
    assert any(v == "banner" and "the long side is centre-cropped" in r for v, r in notes)
    assert not [r for r in rows if r["fatal"]]
