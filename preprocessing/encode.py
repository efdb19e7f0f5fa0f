"""In-process encoders of the schema v2 members (PyAV: FFmpeg's libx264 / libopus / aac / flac
libraries, no subprocess): one window's frames -> an H.264 mp4 member, its waveform -> an
Opus / AAC / FLAC member. The decoders are in `shard_format` (the contract readers import).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

# What `audio_bitrate = 0` means per lossy codec (bits/s, mono speech + sound at 48 kHz).
DEFAULT_AUDIO_BITRATE = {"opus": 96_000, "aac": 128_000}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


# The same input gives the same bytes: without it the Ogg muxer draws a random stream serial
# number per member (and writes the encoder's version), so a rerun or a retried task after a
# lost node would write other bytes for the same sample.
BITEXACT = {"fflags": "+bitexact"}


def encode_h264(
    frames: list[np.ndarray],
    width: int,
    height: int,
    fps: float,
    *,
    crf: float = 23,
    preset: str = "fast",
    tune: str = "fastdecode",
    keyint: int = 0,
    threads: int = 1,
) -> bytes:
    """yuv420p frames (each uint8 [height * 3 // 2, width], ffmpeg's planar layout) -> an mp4
    holding one H.264 stream that starts on a key frame. `keyint` = the most frames between key
    frames (0 = the whole window is one group: the smallest member; a crop anywhere in it
    decodes from its first frame). Scene-cut key frames are off, so sizes are predictable.
    `tune` is x264's ("" = none; "fastdecode" is the default: see PreprocessConfig.h264_tune).
    The frames are BT.601 limited range (`preprocessing.decode` converts every source to it)
    and the stream says so (smpte170m, tv), for players; our decoder assumes it either way."""
    import av

    gop = keyint if keyint > 0 else max(1, len(frames))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options=BITEXACT) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = threads
        stream.codec_context.colorspace = 6  # AVCOL_SPC_SMPTE170M (BT.601)
        stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG (limited, "tv")
        stream.options = {
            "crf": f"{crf:g}",
            "preset": preset,
            **({"tune": tune} if tune else {}),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        for i, data in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def encode_audio_member(
    audio: np.ndarray, sample_rate: int, codec: str, bitrate: int = 0, threads: int = 1
) -> bytes:
    """int16 mono [S] -> an Ogg Opus (`opus`), AAC-in-mp4 (`aac`) or FLAC (`flac`) member."""
    import av

    from preprocessing.shard_format import _AUDIO_FORMATS, AUDIO_CODECS

    encoder = {"opus": "libopus", "aac": "aac", "flac": "flac"}[codec]
    buf = io.BytesIO()
    fmt = _AUDIO_FORMATS[AUDIO_CODECS[codec]]
    with av.open(buf, "w", format=fmt, options=BITEXACT) as container:
        stream = container.add_stream(encoder, rate=sample_rate, layout="mono")
        stream.codec_context.thread_count = threads
        if codec in DEFAULT_AUDIO_BITRATE:
            stream.bit_rate = bitrate or DEFAULT_AUDIO_BITRATE[codec]
        if codec == "opus":
            # 60 ms frames instead of libopus's 20: the same bytes and quality here (stored
            # audio, no latency to keep low), a third of the packets to decode per window.
            stream.options = {"frame_duration": "60"}
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = sample_rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()
