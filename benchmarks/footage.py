"""Real-looking test footage for the benchmarks: high-entropy, moving, noisy video and busy
audio, made by ffmpeg's lavfi sources (the sample corpus is flat colour and compresses
unrealistically well). Per 4 s window at 10 fps, short side 256, this content gives ~550 kB
of JPEG q3 frames and ~150 kB of H.264 crf 23, close to the figures measured on real
HowTo100M videos (~690 kB JPEG, ~117 kB H.264).

Also shard writing without Ray for the benchmarks: `write_shards` decodes each file with the
pipeline's own decoder and encodes its windows with the pipeline's own encoders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def make_footage(path: str | Path, seconds: float = 12.0, seed: int = 0) -> Path:
    """A 640x360 30 fps H.264 + AAC file: a slowly drifting colour gradient with a moving
    test card and a zooming Mandelbrot inset, temporal grain (`noise`), and pink noise mixed
    with a pulsing tone for audio. `seed` shifts the content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x0 = 40 * (seed % 7)
    video = (
        f"gradients=s=640x360:r=30:speed=0.02:seed={seed}[g];"
        "testsrc2=s=320x180:r=30[t];"
        f"mandelbrot=s=200x150:r=30:start_scale={2 + seed % 3}[m];"
        f"[g][t]overlay=x='mod({x0}+t*90,320)':y='90+60*sin(t)'[a];"
        "[a][m]overlay=x='400-mod(t*50,300)':y=20,noise=alls=3:allf=t+u,format=yuv420p[v]"
    )
    audio = (
        f"anoisesrc=c=pink:a=0.06:r=48000:seed={seed}[n];"
        f"sine=f={200 + 40 * seed}:r=48000,tremolo=f=3:d=0.5[s];"
        "[n][s]amix=inputs=2:weights='1 0.6'[au]"
    )
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc",
         "-filter_complex", f"{video};{audio}", "-map", "[v]", "-map", "[au]",
         "-t", f"{seconds:g}", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
         "-c:a", "aac", "-b:a", "160k", str(path)],
        check=True,
    )  # fmt: skip
    return path


# name -> (video_codec, audio_codec) of PreprocessConfig; "v1" is today's reference format.
ENCODINGS = {
    "v1_jpeg_pcm": ("jpeg", "pcm"),
    "h264_opus": ("h264", "opus"),  # the v2 default
    "h264_aac": ("h264", "aac"),
    "h264_flac": ("h264", "flac"),
    "jpeg_opus": ("jpeg", "opus"),
}
DEFAULT = "h264_opus"


def write_shards(videos: list[Path], out: Path, encoding: str, window_s: float = 4.0) -> Path:
    """Non-overlapping `window_s` windows of every video -> `out/<encoding>/w-000000.tar`, with
    the preprocessing job's decoder, encoders and sample contract (no Ray, no captions)."""
    import webdataset as wds

    from preprocessing.config import PreprocessConfig
    from preprocessing.decode import MediaRange, decode_span
    from preprocessing.probe import probe
    from preprocessing.shard_format import encode_sample, sample_key
    from preprocessing.shards import encode_window

    vcodec, acodec = ENCODINGS[encoding]
    cfg = PreprocessConfig(
        source="audioset", videos=str(out), out=str(out), segments="-",
        video_codec=vcodec, audio_codec=acodec,
    )  # fmt: skip
    folder = out / encoding
    folder.mkdir(parents=True, exist_ok=True)
    tar = folder / "w-000000.tar"
    n_frames, n_samples = cfg.frames_per_window, cfg.samples_per_window
    with wds.TarWriter(str(tar)) as sink:
        for path in videos:
            duration = probe(str(path)).duration
            span = decode_span(
                MediaRange(str(path), 0.0, duration), fps=cfg.fps, short_side=cfg.short_side,
                sample_rate=cfg.sample_rate, qscale=cfg.jpeg_qscale, has_audio=True,
                frame_format="yuv420p" if vcodec == "h264" else "jpeg",
            )  # fmt: skip
            if vcodec == "h264":
                width, height = span.width, span.height
            else:
                import io

                from PIL import Image

                width, height = Image.open(io.BytesIO(span.frames[0])).size
            for w in range(int(len(span.frames) // n_frames)):
                frames = span.frames[w * n_frames : (w + 1) * n_frames]
                audio = np.zeros(n_samples, np.int16)
                part = span.audio[w * n_samples : (w + 1) * n_samples]
                audio[: len(part)] = part
                start = w * window_s
                meta = {
                    "schema_version": 2, "key": sample_key(path.stem, start),
                    "source": "audioset", "video_id": path.stem, "clip_id": path.stem,
                    "start": start, "end": start + window_s, "fps": cfg.fps,
                    "num_frames": n_frames, "height": height, "width": width,
                    "frame_sizes": [len(f) for f in frames] if vcodec == "jpeg" else [],
                    "sample_rate": cfg.sample_rate, "num_samples": n_samples, "audio_mask": 1,
                    "speech_ratio": 0.0, "text_mask": 0, "captions": [], "labels": [],
                    "segment": None, "audio_stream": None,
                    "video_codec": "h264" if vcodec == "h264" else "mjpeg",
                    "audio_codec": "pcm_s16le" if acodec == "pcm" else acodec,
                }  # fmt: skip
                if encoding.startswith("v1"):  # exactly what users' v1 shards hold
                    meta["schema_version"] = 1
                    del meta["video_codec"], meta["audio_codec"]
                video, audio_member = encode_window(cfg, frames, audio, (width, height))
                sink.write(encode_sample(meta, video, audio_member))
    return tar
