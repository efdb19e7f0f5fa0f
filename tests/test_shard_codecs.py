"""Schema v2 members on real footage (ffmpeg lavfi, noise + motion): every video/audio codec
option encodes in-process and decodes back in-process with the right size, timing and
quality; a crop decodes from its own window only; hostile members are refused with a reason."""

import subprocess

import numpy as np
import pytest

from preprocessing.config import PreprocessConfig
from preprocessing.decode import MediaRange, decode_span
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
    span = decode_span(MediaRange(footage, 0.0, 4.0), fps=10, short_side=128, sample_rate=RATE,
                       qscale=3, has_audio=True, frame_format=fmt)  # fmt: skip
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


BARS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (128, 128, 128)]  # RGB, left to right


def _bars_clip(path, matrix: str | None) -> str:
    """4 s of four 64-pixel colour bars (BARS), 256x256, as H.264 in BT.601 (untagged, what
    most tools assume) or BT.709 (tagged: most HD video)."""
    bars = "".join(
        f"color=c=0x{r:02x}{g:02x}{b:02x}:s=64x256:r=10:d=4[c{i}];"
        for i, (r, g, b) in enumerate(BARS)
    )
    to_yuv = "scale=flags=accurate_rnd+full_chroma_int"
    tags: list[str] = []
    if matrix == "bt709":
        to_yuv += ":out_color_matrix=bt709:out_range=tv"
        tags = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    graph = bars + f"[c0][c1][c2][c3]hstack=inputs=4,{to_yuv},format=yuv420p[v]"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc",
         "-filter_complex", graph, "-map", "[v]", "-t", "4", "-c:v", "libx264", "-qp", "0",
         *tags, str(path)],
        check=True,
    )  # fmt: skip
    return str(path)


def _bar_colours(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] of the bars -> [4, 3] mean RGB of each bar's middle (away from the
    edges, where 4:2:0 chroma blurs them)."""
    w = frames.shape[2] / 4
    return np.stack(
        [frames[:, :, round((i + 0.375) * w) : round((i + 0.625) * w)].mean(axis=(0, 1, 2))
         for i in range(4)]
    )  # fmt: skip


@pytest.mark.parametrize("matrix", [None, "bt709"])
def test_every_decode_path_gives_the_same_colours(tmp_path, matrix):
    """Training (the H.264 member, whole frames or cropped inside the decoder; JPEG members)
    and evaluation (ffmpeg straight from the file) see the same colours, those of the source,
    and so do the loader's YUV hand-offs (4:2:0 / 4:4:4 planes, converted by `yuv_to_rgb`),
    for a BT.601 and a BT.709 source: preprocessing stores BT.601 whatever the source's
    matrix, and every reader converts BT.601 with swscale's accurate path. Before, a BT.709
    source's green bar came out ~25/255 too green from shards (and its red ~18/255 too dark),
    and whole frames (PyAV's own conversion) ~2/255 darker than cropped ones."""
    import torch

    from preprocessing.decode import decode_square_rgb
    from preprocessing.encode import encode_h264
    from preprocessing.shard_format import decode_frames
    from training.data.augment import yuv_to_rgb_u8

    src = _bars_clip(tmp_path / "bars.mp4", matrix)
    span = decode_span(MediaRange(src, 0.0, 4.0), fps=10, short_side=256, sample_rate=RATE,
                       qscale=2, has_audio=False, frame_format="yuv420p")  # fmt: skip
    assert (span.width, span.height) == (256, 256)
    member = encode_h264(span.frames, 256, 256, 10.0)
    jpegs = decode_span(MediaRange(src, 0.0, 4.0), fps=10, short_side=256, sample_rate=RATE,
                        qscale=2, has_audio=False, frame_format="jpeg").frames  # fmt: skip
    paths = {
        "evaluation (ffmpeg)": decode_square_rgb(src, 10, 256),
        "h264 whole frames": decode_h264(member, num_frames=40),
        "h264 crop in decoder": decode_h264(
            member, frames=slice(4, 36), num_frames=40, crop=(0, 0, 256, 256), out_size=(128, 128)
        ),
        "jpeg": decode_frames(jpegs),
    }
    # The loader's default hand-off: YUV planes cropped in the decoder, RGB on the device.
    for fmt in ("yuv420p", "yuv444p"):
        planes = decode_h264(member, frames=slice(4, 36), num_frames=40, crop=(0, 0, 256, 256),
                             out_size=(128, 128), pix_fmt=fmt)  # fmt: skip
        paths[f"h264 {fmt} planes"] = yuv_to_rgb_u8(*map(torch.from_numpy, planes)).numpy()
    colours = {name: _bar_colours(frames) for name, frames in paths.items()}
    truth = np.array(BARS, np.float64)
    ref = colours["evaluation (ffmpeg)"]
    for name, got in colours.items():
        why = (name, got.round(1).tolist(), ref.round(1).tolist())
        assert np.abs(got - truth).max() < 6, why
        # Measured: within 2 for the BT.601 source; up to ~4 for BT.709, whose YUV is
        # rounded to 8 bits twice on the way to the shard (BT.709 -> BT.601 -> x264).
        assert np.abs(got - ref).max() < 5, why
    whole, cropped = colours["h264 whole frames"], colours["h264 crop in decoder"]
    assert np.abs(whole - cropped).max() < 1.5  # one conversion, whatever the frame size
    for fmt in ("yuv420p", "yuv444p"):  # the same matrix as swscale's, to rounding
        assert np.abs(colours[f"h264 {fmt} planes"] - cropped).max() < 1.5, fmt
