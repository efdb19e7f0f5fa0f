"""Schema v2 members on real footage (ffmpeg lavfi, noise + motion): every video/audio codec
option encodes in-process and decodes back in-process with the right size, timing and
quality; a crop decodes from its own window only; hostile members are refused with a reason."""

import subprocess

import numpy as np
import pytest

from preprocessing.config import PreprocessConfig
from preprocessing.decode import decode_span
from preprocessing.shard_format import (
    SampleError,
    decode_h264,
    decode_sample,
    encode_sample,
    members,
    parse_meta,
)
from preprocessing.shards import encode_window

RATE = 48_000


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> str:
    """5 s of moving, noisy 640x360 video with a 1 kHz click at exactly 1.0 s."""
    path = str(tmp_path_factory.mktemp("footage") / "f.mp4")
    video = (
        "gradients=s=640x360:r=30:speed=0.03[g];testsrc2=s=320x180:r=30[t];"
        "[g][t]overlay=x='mod(t*90,320)':y='90+60*sin(t)',noise=alls=3:allf=t+u[v]"
    )
    click = "sine=f=1000:r=48000:d=5,volume=volume='between(t,1,1.02)':eval=frame[a]"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc",
         "-filter_complex", f"{video};{click}", "-map", "[v]", "-map", "[a]", "-t", "5",
         "-c:v", "libx264", "-crf", "16", "-c:a", "pcm_s16le", path.replace(".mp4", ".mkv")],
        check=True,
    )  # fmt: skip
    return path.replace(".mp4", ".mkv")


def _meta(cfg, width, height, num_samples=4 * RATE) -> dict:
    return {
        "schema_version": 2, "key": "k_00000000", "source": "audioset", "video_id": "k",
        "clip_id": "k", "start": 0.0, "end": 4.0, "fps": 10.0, "num_frames": 40,
        "height": height, "width": width, "frame_sizes": [], "sample_rate": RATE,
        "num_samples": num_samples, "audio_mask": 1, "speech_ratio": 0.0, "text_mask": 0,
        "captions": [], "labels": [], "segment": None, "audio_stream": None,
        "video_codec": "h264" if cfg.video_codec == "h264" else "mjpeg",
        "audio_codec": "pcm_s16le" if cfg.audio_codec == "pcm" else cfg.audio_codec,
    }  # fmt: skip


def _cfg(**kw) -> PreprocessConfig:
    return PreprocessConfig(source="audioset", videos="v", out="o", segments="s.csv", **kw)


def _window(footage, cfg):
    fmt = "yuv420p" if cfg.video_codec == "h264" else "jpeg"
    span = decode_span(footage, 0.0, 4.0, fps=10, short_side=128, sample_rate=RATE, qscale=3,
                       has_audio=True, frame_format=fmt)  # fmt: skip
    if fmt == "jpeg":
        import io

        from PIL import Image

        width, height = Image.open(io.BytesIO(span.frames[0])).size
    else:
        width, height = span.width, span.height
    meta = _meta(cfg, width, height)
    if fmt == "jpeg":
        meta["frame_sizes"] = [len(f) for f in span.frames]
    span.audio = np.pad(span.audio[: 4 * RATE], (0, max(0, 4 * RATE - len(span.audio))))
    video, audio = encode_window(cfg, span.frames[:40], span.audio, (width, height))
    return span, encode_sample(meta, video, audio)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize(
    "video_codec,audio_codec",
    [("h264", "opus"), ("h264", "aac"), ("h264", "flac"), ("jpeg", "pcm")],
)
def test_each_codec_round_trips(footage, video_codec, audio_codec):
    cfg = _cfg(video_codec=video_codec, audio_codec=audio_codec)
    span, sample = _window(footage, cfg)
    meta = parse_meta(sample["json"])
    vext, aext = members(meta)
    assert set(sample) == {"__key__", "json", vext, aext}
    out = decode_sample(sample)
    assert out["video"].shape == (40, 128, 228, 3) and out["video"].dtype == np.uint8
    assert out["audio"].shape == (4 * RATE,) and out["audio"].dtype == np.int16
    # Quality against ffmpeg's own RGB of the same frames.
    ref = _rgb_reference(footage)
    assert _psnr(out["video"], ref) > 27  # through 4:2:0 and the codec; JPEG q3: ~31 dB
    # The click (1.0 s -> sample 48000) is where it was: in-process decoding keeps time
    # (Opus pre-skip and AAC priming are removed by the demuxer).
    env = np.abs(out["audio"].astype(np.float32))
    onset = int(np.argmax(env > 0.5 * env.max()))
    assert abs(onset - RATE) < 0.005 * RATE, onset
    if aext in ("flac", "npy"):
        assert np.array_equal(out["audio"], span.audio)  # lossless


def _rgb_reference(footage) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", footage, "-vf",
         "fps=10:start_time=0,scale=228:128,setsar=1", "-frames:v", "40", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(40, 128, 228, 3)


def test_h264_window_is_one_group_and_a_crop_decodes_only_its_frames(footage):
    import av

    _, sample = _window(footage, _cfg())
    with av.open(__import__("io").BytesIO(sample["mp4"])) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    assert len(keys) == 40 and keys[0] and sum(keys) == 1  # one key frame per window
    full = decode_h264(sample["mp4"], num_frames=40)
    crop = decode_h264(sample["mp4"], frames=slice(7, 39, 4), num_frames=40)
    assert np.array_equal(crop, full[7:39:4])
    small = _cfg(h264_keyint=10)
    _, sample10 = _window(footage, small)
    with av.open(__import__("io").BytesIO(sample10["mp4"])) as c:
        assert sum(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size) == 4


def test_crop_inside_the_decoder_matches_crop_after_it(footage):
    """The loader's H.264 path (crop + resize in FFmpeg) against whole frames cut and resized
    in torch (the JPEG path): same pictures up to the resize kernel; measured mean |diff|."""
    from training.data.augment import ClipParams, crop_resize_flip_u8

    _, sample = _window(footage, _cfg())
    box = (11, 30, 100, 150)
    inside = decode_sample(sample, slice(4, 36), crop=box, out_size=(64, 64))
    assert inside["cropped"] and inside["video"].shape == (32, 64, 64, 3)
    whole = decode_sample(sample, slice(4, 36))
    after = crop_resize_flip_u8(whole["video"], ClipParams(box, False, (1, 1, 1, 0), 0), 64, 64)
    diff = np.abs(inside["video"].astype(np.int16) - after.numpy().astype(np.int16))
    # A few levels of 255 (this noisy footage: ~5; benchmarks/footage.py: ~3): the resize
    # kernels and the chroma upsampling differ, not the picture.
    assert diff.mean() < 8, diff.mean()
    with pytest.raises(SampleError, match="outside"):
        decode_sample(sample, slice(0, 8), crop=(100, 0, 100, 10), out_size=(8, 8))


def test_hostile_v2_members_are_refused_with_a_reason(footage):
    _, sample = _window(footage, _cfg())
    meta = parse_meta(sample["json"])
    with pytest.raises(SampleError, match="metadata says 64x64"):
        decode_h264(sample["mp4"], size=(64, 64), num_frames=40)
    with pytest.raises(SampleError, match="over the limit"):
        decode_h264(sample["mp4"], max_pixels=1000)
    with pytest.raises(SampleError, match="not a readable mp4"):
        decode_h264(b"\x00" * 5000)
    with pytest.raises(SampleError, match="crop needs frame 44"):
        decode_h264(sample["mp4"], frames=slice(40, 45), num_frames=45)
    with pytest.raises(SampleError, match="audio"):
        decode_sample({**sample, "opus": b"OggS" + bytes(300)})
    with pytest.raises(SampleError, match="lacks 'video_codec'"):
        parse_meta({k: v for k, v in meta.items() if k != "video_codec"})
    short = __import__("json").dumps(dict(meta, num_samples=2 * 4 * RATE)).encode()
    with pytest.raises(SampleError, match="samples"):
        decode_sample({**sample, "json": short})


def test_opus_needs_a_rate_it_supports():
    with pytest.raises(ValueError, match="opus needs sample_rate"):
        _cfg(sample_rate=32000)
    assert _cfg(sample_rate=32000, audio_codec="flac").audio_codec == "flac"


@pytest.mark.parametrize("codec", ["opus", "aac", "flac"])
def test_members_are_byte_identical_for_the_same_input(codec):
    """Reproducible shards: a rerun, or a task retried after a lost node, writes the same bytes
    (the Ogg muxer's random stream serial is what broke this before `BITEXACT`)."""
    from preprocessing.encode import encode_audio_member, encode_h264

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(48_000) * 3000).astype(np.int16)
    assert encode_audio_member(audio, 48_000, codec) == encode_audio_member(audio, 48_000, codec)
    planes = [rng.integers(0, 256, (96 * 3 // 2, 128), dtype=np.uint8) for _ in range(10)]
    assert encode_h264(planes, 128, 96, 10.0) == encode_h264(planes, 128, 96, 10.0)
