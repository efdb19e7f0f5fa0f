"""ffmpeg decoding (shapes, rates, timing), JPEG splitting, and VAD on speech vs silence."""

import io

import numpy as np
import pytest
from conftest import make_clip
from PIL import Image

from preprocessing.decode import DecodeError, MediaRange, decode_span, split_jpegs
from preprocessing.probe import ProbeError, probe
from preprocessing.vad import speech_ratio


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "landscape": make_clip(d / "land.mp4", 6, size="426x240", rate=30),
        "portrait": make_clip(d / "port.mp4", 4, size="240x320", rate=24, audio=None),
        "speech": make_clip(
            d / "speech.mp4",
            6,
            audio="silence",
            speech="open the oven and bake the bread now",
            speech_at=1.0,
        ),
        "silence": make_clip(d / "silence.mp4", 4, audio="silence"),
    }


def test_probe_facts(media):
    f = probe(str(media["landscape"]))
    assert (f.width, f.height, f.has_audio, f.video_codec) == (426, 240, True, "h264")
    assert f.fps == pytest.approx(30.0) and f.duration == pytest.approx(6.0, abs=0.1)
    g = probe(str(media["portrait"]))
    assert not g.has_audio and g.sample_rate == 0


def test_decode_span_shapes_and_rates(media):
    span = decode_span(
        MediaRange(str(media["landscape"]), 1.0, 4.0),
        fps=10,
        short_side=128,
        sample_rate=48000,
        qscale=3,
        has_audio=True,
    )
    assert len(span.frames) == 40
    img = Image.open(io.BytesIO(span.frames[0]))
    assert img.size == (228, 128)  # short side 128; 426 * 128 / 240 = 227.2 -> even 228
    assert span.audio.dtype == np.int16 and abs(len(span.audio) - 4 * 48000) <= 1024
    port = decode_span(
        MediaRange(str(media["portrait"]), 0.0, 4.0),
        fps=10,
        short_side=128,
        sample_rate=48000,
        qscale=3,
        has_audio=False,
    )
    assert Image.open(io.BytesIO(port.frames[0])).size == (128, 170) and port.audio is None


def test_decode_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ProbeError) as e:
        probe(str(bad))
    assert "\n" not in str(e.value) and "ffprobe cannot read it" in str(e.value)
    with pytest.raises(DecodeError) as e:
        decode_span(
            MediaRange(str(bad), 0, 1),
            fps=10,
            short_side=64,
            sample_rate=48000,
            qscale=3,
            has_audio=False,
        )
    assert "\n" not in str(e.value)


def test_split_jpegs_roundtrip():
    imgs = []
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(np.full((16, 24, 3), 40 * i, np.uint8)).save(buf, "JPEG")
        imgs.append(buf.getvalue())
    assert split_jpegs(b"".join(imgs)) == imgs
    with pytest.raises(DecodeError):
        split_jpegs(imgs[0][:-10])


def test_vad_separates_speech_from_silence(media):
    sp = decode_span(
        MediaRange(str(media["speech"]), 0.0, 6.0),
        fps=10,
        short_side=64,
        sample_rate=48000,
        qscale=5,
        has_audio=True,
    )
    si = decode_span(
        MediaRange(str(media["silence"]), 0.0, 4.0),
        fps=10,
        short_side=64,
        sample_rate=48000,
        qscale=5,
        has_audio=True,
    )
    sr = 48000
    before = speech_ratio(sp.audio[: sr * 1], sr)  # speech starts at 1.0 s
    during = speech_ratio(sp.audio[int(sr * 1.2) : int(sr * 2.8)], sr)
    assert during > 0.6 and before < 0.2
    assert speech_ratio(si.audio, sr) < 0.1
    assert speech_ratio(np.zeros(100, np.int16), sr) == 0.0
