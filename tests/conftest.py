"""Shared fixtures: one embedded Ray per test session, and small real media files made by ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))
# Ray workers unpickle by module name: the project root must be importable in every worker.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)
VATT = [sys.executable, "-m", "pipeline"]


@pytest.fixture(scope="session")
def ray_local():
    """An embedded 2-CPU Ray on 127.0.0.1 shared by the whole session. With the dashboard:
    Ray Train's placement-group cleaner asks its State API (shared/notes/platform.md)."""
    import ray

    from pipeline.ray_runtime import init_ray

    init_ray(num_cpus=2, dashboard=True)
    yield ray
    ray.shutdown()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def make_clip(
    path: Path,
    seconds: float,
    size: str = "320x240",
    rate: int = 25,
    audio: str | None = "tone",
    speech: str | None = None,
    speech_at: float = 0.5,
) -> Path:
    """A real H.264/AAC mp4: testsrc video; audio = quiet tone, silence (`"silence"`) or none;
    optionally an espeak-ng sentence mixed in at `speech_at` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio is None:
        ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-an", str(path))
        return path
    src = (
        "anullsrc=r=48000:cl=mono" if audio == "silence" else "sine=frequency=330:sample_rate=48000"
    )
    args += ["-f", "lavfi", "-t", str(seconds), "-i", src]
    if speech:
        wav = path.with_suffix(".speech.wav")
        subprocess.run(["espeak-ng", "-w", str(wav), speech], check=True)
        ms = int(speech_at * 1000)
        args += [
            "-i", str(wav), "-filter_complex",
            f"[1:a]volume=0.05[s];[2:a]aresample=48000,adelay={ms}|{ms},apad[v];"
            "[s][v]amix=inputs=2:duration=first:normalize=0[a]",
            "-map", "0:v", "-map", "[a]",
        ]  # fmt: skip
    else:
        args += ["-filter:a", "volume=0.05"]
    ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="session")
def sample_shards(tmp_path_factory, ray_local) -> dict[str, Path]:
    """A small sample corpus (8 HowTo100M-style videos, 4 AudioSet clips, 8 MSR-VTT videos)
    preprocessed once per session into real shards (short side 96 to keep it quick).

    Keys: corpus, howto100m, audioset (shard folders), msrvtt_csv, msrvtt_videos, tokenizer."""
    from preprocessing.config import PreprocessConfig
    from preprocessing.jobs import run_preprocess
    from preprocessing.sample_corpus import SampleCorpusConfig, generate_sample_corpus

    root = tmp_path_factory.mktemp("sample_shards")
    corpus = root / "corpus"
    generate_sample_corpus(
        corpus,
        SampleCorpusConfig(
            videos=8, audioset_clips=4, msrvtt_videos=8, seed=0, min_video_s=20, max_video_s=40
        ),
    )
    inputs = {
        "howto100m": {"captions": str(corpus / "howto100m" / "caption.json")},
        "audioset": {"segments": str(corpus / "audioset" / "segments.csv")},
    }
    for source, extra in inputs.items():
        cfg = PreprocessConfig(
            source=source,
            videos=str(corpus / source / "videos"),
            out=str(root / source),
            short_side=96,
            samples_per_shard=16,
            **extra,
        )
        run_preprocess(cfg, show_progress=False)
    return {
        "corpus": corpus,
        "howto100m": root / "howto100m",
        "audioset": root / "audioset",
        "msrvtt_csv": corpus / "msrvtt" / "msrvtt_test.csv",
        "msrvtt_videos": corpus / "msrvtt" / "videos",
        "tokenizer": root / "howto100m" / "tokenizer.json",
    }
