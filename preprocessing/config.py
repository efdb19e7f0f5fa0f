"""PreprocessConfig: every knob of the preprocessing job, validated where it is defined."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from preprocessing import storage

SOURCES = ("howto100m", "audioset", "webvid")
# Containers ffmpeg reads that downloaders, phones and screen recorders write; when two files
# share an id, the earlier extension here is used (the other gets an errors.parquet row).
VIDEO_EXTENSIONS = (
    ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".f4v", ".3gp", ".3g2", ".wmv", ".asf", ".ogv", ".vob", ".mxf", ".dv",
)  # fmt: skip
# Bumped when the same settings would give other samples (keys, windows, timing): a run made
# by an older version is then not resumed into, which would mix the two.
PLAN_VERSION = 3  # 3: schema v2 encodings


@dataclass
class PreprocessConfig:
    """Settings of one `vatt preprocess` run. Paths may be local; object-store URIs come later."""

    source: Literal["howto100m", "audioset", "webvid"]
    # Folder of <video_id>.<ext> (HowTo100M), [Y]<YTID>[_<start>_<end>].<ext> (AudioSet), or
    # [<page_dir>/]<videoid>.<ext> (WebVid; or whatever the CSV's path column names).
    videos: str
    out: str
    captions: str | None = None  # HowTo100M caption.json
    segments: str | None = None  # AudioSet segments CSV
    csv: str | None = None  # WebVid-style CSV (videoid, name, [page_dir | path], ...)
    # Decoding (spec §1): 10 fps, 48 kHz mono; short side 256 leaves room for a 224 random crop.
    fps: float = 10.0
    short_side: int = 256
    # Longest displayed side / shortest: a wider (or taller) picture is centre-cropped to this,
    # so a 400x16 banner gives 640x256 frames, not 6400x256. 2.5 keeps 16:9 and 21:9 whole.
    max_aspect_ratio: float = 2.5
    sample_rate: int = 48000
    # A stored window is longer than the 3.2 s training window so the loader can crop in time.
    window_seconds: float = 4.0
    train_window_seconds: float = 3.2
    # AudioSet windows per segment: "fit" = floor(segment / window) windows spread evenly (a
    # 10 s clip gives 0-4 s and 6-10 s: 4-6 s is never used); "cover" = ceil(segment / window)
    # overlapping windows that cover the whole segment (the official code crops anywhere in
    # the 10 s clip).
    audioset_windows: str = "fit"
    # Nearest-k captions per window (MIL-NCE positives); 5 in the paper.
    captions_per_window: int = 5
    # Speech: webrtcvad aggressiveness 0-3 and frame length (10/20/30 ms are the only valid ones).
    vad_mode: int = 2
    vad_frame_ms: int = 30
    # Windows whose speech ratio is below this get text_mask 0 (their captions are likely not
    # about what is heard/seen there). AudioSet windows always have text_mask 0.
    min_speech_ratio: float = 0.1
    # Shard encoding (schema v2, docs/shard-format.md). Video: "h264" (one H.264 stream per
    # window, default: ~5x smaller than JPEG frames at about the same PSNR) or "jpeg"
    # (per-frame JPEG, the v1 member). Audio: "opus" (default: lossy, the smallest at a given
    # quality; ~1/8 of int16), "aac", "flac" or "pcm" (int16 .npy, the v1 member) lossless.
    video_codec: Literal["h264", "jpeg"] = "h264"
    # libx264 constant rate factor (0-51, lower = better; 23 is x264's default) and preset.
    h264_crf: float = 23.0
    h264_preset: str = "fast"
    # libx264 tune ("" = none). "fastdecode" (no CABAC, no deblocking, no weighted prediction)
    # decodes ~2.5x faster for ~10% more bytes at about the same PSNR: the loader's decode is
    # the cost that matters (docs/shard-format.md).
    h264_tune: str = "fastdecode"
    # Most frames between key frames; 0 = one key frame per window (smallest; a training crop
    # anywhere in the window decodes from the window's first frame, never another window's).
    h264_keyint: int = 0
    audio_codec: Literal["opus", "aac", "flac", "pcm"] = "opus"
    # Lossy audio bit rate in bits/s; 0 = the codec's default here (Opus 96k, AAC 128k).
    audio_bitrate: int = 0
    # JPEG quality of stored frames as ffmpeg's -q:v (2 = best, 31 = worst); 3 is visually
    # lossless. Used by video_codec "jpeg".
    jpeg_qscale: int = 3
    # Target windows per shard; a shard holds whole videos, so sizes vary around this.
    samples_per_shard: int = 64
    # WebVid (ALPRO's sparse sampling): one sample per clip, the whole clip cut into
    # `sparse_frames` equal segments (ALPRO's num_frm = 4) with `frames_per_segment` frames
    # stored evenly in each, so a loader can draw one at random per segment in training (2
    # gives it a choice and keeps a sample ~8 JPEGs) and take the middle one in evaluation.
    sparse_frames: int = 4
    frames_per_segment: int = 2
    # A WebVid clip shorter than this is a window error (too short to hold a scene).
    min_clip_seconds: float = 1.0
    # Word-level vocabulary size cap (spec: 2^16).
    vocab_size: int = 65536
    # The job fails (exit 1) if more than this fraction of inputs+windows failed.
    max_error_fraction: float = 0.5
    # Ray resources per shard task.
    cpus_per_task: float = 1.0
    # File extensions (lowercase, with the dot) taken as videos, in order of preference.
    video_extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "howto100m" and not self.captions:
            raise ValueError("howto100m needs captions (the caption.json path)")
        if self.source == "audioset" and not self.segments:
            raise ValueError("audioset needs segments (the segments CSV path)")
        if self.source == "webvid" and not self.csv:
            raise ValueError("webvid needs csv (the WebVid-style CSV path)")
        if self.sparse_frames < 1 or self.frames_per_segment < 1:
            raise ValueError(
                f"sparse_frames ({self.sparse_frames}) and frames_per_segment "
                f"({self.frames_per_segment}) must be >= 1"
            )
        if not self.min_clip_seconds > 0:
            raise ValueError(f"min_clip_seconds must be > 0, got {self.min_clip_seconds}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.short_side < 32 or self.short_side % 2:
            raise ValueError(f"short_side must be an even number >= 32, got {self.short_side}")
        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(
                f"sample_rate must be 8000/16000/32000/48000 (what webrtcvad accepts), got {self.sample_rate}"
            )
        if self.audioset_windows not in ("fit", "cover"):
            raise ValueError(f"audioset_windows={self.audioset_windows!r}: choose fit or cover")
        if self.train_window_seconds <= 0:
            raise ValueError("train_window_seconds must be > 0")
        if self.window_seconds < self.train_window_seconds:
            raise ValueError(
                f"window_seconds ({self.window_seconds}) must be >= train_window_seconds "
                f"({self.train_window_seconds}) so the loader can crop a training window"
            )
        if self.captions_per_window < 1:
            raise ValueError("captions_per_window must be >= 1")
        if self.vad_mode not in (0, 1, 2, 3):
            raise ValueError(f"vad_mode must be 0-3, got {self.vad_mode}")
        if self.vad_frame_ms not in (10, 20, 30):
            raise ValueError(f"vad_frame_ms must be 10, 20 or 30, got {self.vad_frame_ms}")
        if not 0.0 <= self.min_speech_ratio <= 1.0:
            raise ValueError("min_speech_ratio must be in [0, 1]")
        if not 2 <= self.jpeg_qscale <= 31:
            raise ValueError("jpeg_qscale must be in [2, 31]")
        if self.video_codec not in ("h264", "jpeg"):
            raise ValueError(f"video_codec must be h264 or jpeg, got {self.video_codec!r}")
        if self.audio_codec not in ("opus", "aac", "flac", "pcm"):
            raise ValueError(
                f"audio_codec must be opus, aac, flac or pcm, got {self.audio_codec!r}"
            )
        if not 0 <= self.h264_crf <= 51:
            raise ValueError(f"h264_crf must be in [0, 51], got {self.h264_crf}")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                   "slower", "veryslow")  # fmt: skip
        if self.h264_preset not in presets:
            raise ValueError(f"h264_preset must be one of {presets}, got {self.h264_preset!r}")
        tunes = ("", "fastdecode", "film", "animation", "grain", "stillimage", "zerolatency")
        if self.h264_tune not in tunes:
            raise ValueError(f"h264_tune must be one of {tunes}, got {self.h264_tune!r}")
        if self.h264_keyint < 0:
            raise ValueError(f"h264_keyint must be >= 0, got {self.h264_keyint}")
        if self.audio_bitrate < 0:
            raise ValueError(f"audio_bitrate must be >= 0, got {self.audio_bitrate}")
        if self.audio_codec == "opus" and self.sample_rate not in (8000, 16000, 48000):
            raise ValueError(
                f"audio_codec opus needs sample_rate 8000, 16000 or 48000, got "
                f"{self.sample_rate}: use aac, flac or pcm"
            )
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ValueError("max_error_fraction must be in [0, 1]")
        if self.cpus_per_task <= 0:
            raise ValueError("cpus_per_task must be > 0")
        if not self.max_aspect_ratio >= 1.0:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        bad = [e for e in self.video_extensions if not (e.startswith(".") and e == e.lower())]
        if not self.video_extensions or bad:
            raise ValueError(
                f"video_extensions must be a non-empty list like ['.mp4', '.mkv'] (lowercase, "
                f"with the dot); bad: {bad or 'empty'}"
            )

    @property
    def frames_per_window(self) -> int:
        return round(self.window_seconds * self.fps)

    @property
    def clip_frames(self) -> int:
        """Frames stored per WebVid clip."""
        return self.sparse_frames * self.frames_per_segment

    @property
    def samples_per_window(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    def plan_fingerprint(self) -> str:
        """Hash of every setting that changes which samples are written or their bytes.
        A resumed run must match it; `cpus_per_task` and the threshold do not count."""
        d = dataclasses.asdict(self)
        for k in ("out", "max_error_fraction", "cpus_per_task"):
            d.pop(k)
        # Rotated credentials inside an input URI do not make it another run.
        d = {k: storage.redact(v) if isinstance(v, str) else v for k, v in d.items()}
        d["plan_version"] = PLAN_VERSION
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
