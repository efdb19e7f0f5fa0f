"""Shared fixtures: one embedded Ray per session (checked clean after every module), and small
real media files made by ffmpeg."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions"))
# Ray Train's controller polls its workers every 2 s by default, so every fit ends up to 2 s
# after its workers do (and each test's Ray inherits this from the driver's environment). A
# poll that outlasts the interval is carried into the next round, not counted as a failure
# (a worker is declared dead only after RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S, 10 min).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# Ray Train starts a preemption-watcher actor per fit (a process that imports Ray Train, ~0.4 s
# of a busy 2-core box) to checkpoint ahead of a spot node's drain notice. No test drains a
# node (node loss is tested with SIGKILL, which gives no notice), so the suite does without.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# Ray workers unpickle by module name: the project root must be importable in every worker.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
)
VATT = [sys.executable, "-m", "pipeline"]


_SESSION_RAY: dict[str, str] = {}


def start_ray():
    """The embedded 2-CPU Ray on 127.0.0.1 that in-process tests share, started once per
    session (with the dashboard: Ray Train's placement-group cleaner asks its State API,
    shared/notes/platform.md). A Ray that some test started in-process by other means (a CLI
    call, which starts one without the dashboard) is replaced."""
    import ray

    from pipeline.ray_runtime import init_ray

    if ray.is_initialized() and ray.get_runtime_context().gcs_address != _SESSION_RAY.get("gcs"):
        ray.shutdown()
    if not ray.is_initialized():
        init_ray(num_cpus=2, dashboard=True)
        _SESSION_RAY["gcs"] = ray.get_runtime_context().gcs_address
    return ray


@pytest.fixture(scope="module")
def ray_local():
    # Per module, not per session: a module may shut the session's Ray down (test_object_store
    # restarts it with its S3 variables, then stops it); the next module's first use starts it
    # again. When it is up, start_ray() returns at once.
    return start_ray()


@pytest.fixture(scope="module", autouse=True)
def ray_left_clean(request):
    """After each module the session's Ray should be as a new one: no placement group left
    and every CPU free. If a module leaves either, the Ray is replaced (with a warning naming
    the module) so the next module never waits on CPUs it cannot get: a Train controller
    pending forever is how a leaked placement group shows (docs/testing.md)."""
    yield
    import ray

    if not ray.is_initialized():
        return
    if ray.get_runtime_context().gcs_address != _SESSION_RAY.get("gcs"):
        ray.shutdown()  # not the session's Ray: a test's own, done with
        return
    leaked = [
        pg_id for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"
    ]
    busy = ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)
    if leaked or busy:
        ray.shutdown()
        warnings.warn(
            f"{request.module.__name__} left {len(leaked)} placement groups and {busy:g} CPUs "
            "in use: the session's Ray was replaced",
            stacklevel=1,
        )


@pytest.fixture
def vatt_in_process(capsys):
    """`vatt ARGS` through the real entry point (`pipeline.cli.main`) in this process: returns
    (exit code, stderr). For usage errors, which stop before Ray or any work: a subprocess
    each costs seconds of imports (tests still run the real process where it matters)."""
    from pipeline.cli import main

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()  # drop what came before
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def vatt_here(capsys):
    """`vatt ARGS` through the real entry point in this process, on the session's Ray: returns a
    CompletedProcess (returncode, stdout, stderr). For commands that run a real job but need
    nothing a fresh process gives (a Ray start and imports cost seconds per call)."""
    from pipeline.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        start_ray()
        capsys.readouterr()  # drop what came before
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return run


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


def built_once(tmp_path_factory, name: str, build) -> dict[str, Path]:
    """`build(folder)` once per test run, its result a dict of paths.

    `make test` runs the suite on 2 pytest-xdist workers by default (a test waits on Ray more
    than it computes, docs/testing.md), and each worker has its own session. The first worker
    to ask builds into the run's shared temp folder under a file lock; the other waits on the
    lock and reads the result back instead of building it again. Without xdist: a plain build."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    import json
    import shutil

    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # one per run, above every worker's
    result = shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if result.exists():
            return {k: Path(v) for k, v in json.loads(result.read_text()).items()}
        folder = shared / name
        shutil.rmtree(folder, ignore_errors=True)  # a build that failed in the other worker
        folder.mkdir()
        built = build(folder)
        result.write_text(json.dumps({k: str(v) for k, v in built.items()}))
        return built


@pytest.fixture(scope="session")
def sample_shards(tmp_path_factory) -> dict[str, Path]:
    """A small sample corpus (8 HowTo100M-style videos, 4 AudioSet clips, 8 MSR-VTT videos;
    UCF101-style 3 groups x 8 classes, ESC-50-style 5 x 8 sounds, 4 YouCook2-style videos,
    Kinetics-style 3 x 8 clips: 2 train + 1 validation per class) preprocessed once per
    session into real shards (short side 96 to keep it quick).

    Keys: corpus, howto100m, audioset (shard folders), msrvtt_csv, msrvtt_videos, tokenizer,
    ucf101_root (holds videos/ and splits/), esc50_csv, esc50_audio, youcook2_csv,
    youcook2_videos, kinetics_train_csv, kinetics_val_csv, kinetics_videos."""
    start_ray()
    return built_once(tmp_path_factory, "sample_shards", _build_sample_shards)


def _build_sample_shards(root: Path) -> dict[str, Path]:
    from pipeline.sample_data.corpus import SampleCorpusConfig, generate_sample_corpus
    from preprocessing.config import PreprocessConfig
    from preprocessing.jobs import run_preprocess

    corpus = root / "corpus"
    generate_sample_corpus(
        corpus,
        SampleCorpusConfig(
            **dict(videos=8, audioset_clips=4, msrvtt_videos=8, seed=0),
            **dict(min_video_s=20, max_video_s=40),
            **dict(ucf101_groups=3, esc50_clips_per_class=5, youcook2_videos=4),
            kinetics_clips_per_class=3,
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
        "ucf101_root": corpus / "ucf101",
        "esc50_csv": corpus / "esc50" / "meta" / "esc50.csv",
        "esc50_audio": corpus / "esc50" / "audio",
        "youcook2_csv": corpus / "youcook2" / "youcookii_val.csv",
        "youcook2_videos": corpus / "youcook2" / "videos",
        "kinetics_train_csv": corpus / "kinetics" / "annotations" / "train.csv",
        "kinetics_val_csv": corpus / "kinetics" / "annotations" / "validate.csv",
        "kinetics_videos": corpus / "kinetics" / "videos",
    }


@pytest.fixture(scope="session")
def trained_debug(sample_shards, tmp_path_factory) -> dict[str, Path]:
    """The `debug` preset pretrained on the session's sample shards (2 workers, ZeRO-2),
    exported once; the evaluation and fine-tuning tests compare it with an untrained model.

    Keys: run (the run folder), export (model.safetensors + config.json + tokenizer.json)."""
    start_ray()
    return built_once(
        tmp_path_factory, "trained_debug", lambda root: _train_debug(root, sample_shards)
    )


def _train_debug(root: Path, sample_shards: dict[str, Path]) -> dict[str, Path]:
    from pipeline.commands.train import build_config
    from training.checkpoint import find_latest_checkpoint
    from training.export import export_weights
    from training.pretrain.loop import run_training

    cfg = build_config(
        "debug",
        [
            f"storage={root}",
            "name=debug",
            f"data.howto100m={sample_shards['howto100m']}",
            f"data.audioset={sample_shards['audioset']}",
            f"data.tokenizer={sample_shards['tokenizer']}",
            "data.shuffle_buffer=64",
            # No held-out evaluation during training: the tests run their own.
            "eval.msrvtt_csv=",
            "eval.msrvtt_videos=",
            f"max_steps={TRAINED_DEBUG_STEPS}",
            f"optim.decay_steps={TRAINED_DEBUG_STEPS}",
            f"checkpoint.every_steps={TRAINED_DEBUG_STEPS}",
            "log_every=50",
        ],
    )
    run_training(cfg)
    checkpoint, _ = find_latest_checkpoint(root / "debug")
    assert checkpoint is not None, "the trained_debug run wrote no valid checkpoint"
    return {"run": root / "debug", "export": export_weights(checkpoint, root / "export")}


# Enough for the debug model to match text, video and audio by topic on the sample corpus
# (make demo trains 300 steps on a 3x larger corpus).
TRAINED_DEBUG_STEPS = 150


def make_howto_corpus(root: Path, videos: int = 4, seconds: float = 12) -> tuple[Path, Path]:
    """A tiny HowTo100M-style input: `videos` clips with speech and 4 captions each
    (4 windows per video). Returns (videos folder, caption.json)."""
    import json

    folder = root / "videos"
    lines = ["pour the flour", "stir the batter", "heat the pan", "serve it warm"]
    captions = {}
    for i in range(videos):
        make_clip(folder / f"vid{i}.mp4", seconds, speech=lines[i % 4], speech_at=1.0)
        captions[f"vid{i}"] = {
            "start": [1.0, 4.0, 7.0, 10.0],
            "end": [2.5, 5.5, 8.5, 11.5],
            "text": lines,
        }
    caption_json = root / "caption.json"
    caption_json.write_text(json.dumps(captions))
    return folder, caption_json


def make_sample(key: str, seed: int = 0) -> dict:
    """One well-formed AudioSet-style schema v1 sample (member -> bytes) written by the shard
    contract's own encoder: 40 real JPEG frames (128x96) and 4 s of 48 kHz int16 audio."""
    import io

    import numpy as np
    from PIL import Image

    from preprocessing.shard_format import encode_sample

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(40):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buf, "JPEG")
        frames.append(buf.getvalue())
    audio = rng.integers(-3000, 3000, 192_000, dtype=np.int16)
    meta = {
        "schema_version": 1, "key": key, "source": "audioset",
        "video_id": key, "clip_id": key, "start": 0.0, "end": 4.0, "fps": 10.0,
        "num_frames": 40, "height": 96, "width": 128, "frame_sizes": [len(f) for f in frames],
        "sample_rate": 48000, "num_samples": len(audio), "audio_mask": 1, "speech_ratio": 0.0,
        "text_mask": 0, "captions": [], "labels": ["/m/01"], "segment": [0.0, 4.0],
        "audio_stream": {"index": 1, "language": None, "streams": 1},
    }  # fmt: skip
    sample = encode_sample(meta, frames, audio)
    return {k: v for k, v in sample.items() if k != "__key__"}


def write_hostile_shards(folder: Path, member_limit: int) -> tuple[list[str], dict[str, str]]:
    """Shards a reader must survive, next to good samples: returns (good keys, {where the
    problem is: words its reason must contain}). `member_limit` is the reader's
    MAX_MEMBER_BYTES in the test (a member one byte over it is written)."""
    import gzip
    import io
    import json
    import tarfile

    import numpy as np
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    good = make_sample("good_a")
    meta = json.loads(good["json"])
    npy = io.BytesIO()  # a header claiming 10^11 samples over 2 kB of data
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "<i2", "fortran_order": False, "shape": (10**11,)}
    )
    bombed = bytearray(good["mjpeg"])  # every frame's header claims 30000x30000 pixels
    sof = bombed.find(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    while sof >= 0:
        bombed[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
        sof = bombed.find(b"\xff\xc0", sof + 9)
    bombed = bytes(bombed)
    hostile = {
        "json_list": {**good, "json": b"[]"},
        "wrong_types": {**good, "json": json.dumps({**meta, "fps": "ten"}).encode()},
        "npy_claims_1e11": {**good, "npy": npy.getvalue() + bytes(2048)},
        "jpeg_30000": {**good, "mjpeg": bombed},
        "over_limit": {**good, "mjpeg": bytes(member_limit + 1)},
    }
    main = folder / "hostile-000000.tar"
    with wds.TarWriter(str(main)) as w:
        w.write({"__key__": "good_a", **good})
        for key, sample in hostile.items():
            w.write({"__key__": key, **sample})
        w.write({"__key__": "good_a", **good})  # the same key again: a second sample
    with wds.TarWriter(str(folder / "hostile-000001.tar")) as w:
        for key in ("good_b", "good_c"):
            w.write({"__key__": key, **make_sample(key, seed=1)})
    whole = (folder / "hostile-000001.tar").read_bytes()
    (folder / "hostile-000001.tar").write_bytes(whole[: len(whole) * 3 // 4])  # truncated
    with gzip.open(folder / "hostile-000002.tar", "wb", compresslevel=1) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:  # a huge member, tiny compressed
            info = tarfile.TarInfo("huge.npy")
            info.size = 8 * member_limit
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    m = f"{main}:"
    expected = {
        f"{m}json_list": "metadata is a JSON list, not an object",
        f"{m}wrong_types": "metadata 'fps' is 'ten', expected a positive number",
        f"{m}npy_claims_1e11": "audio header claims 100000000000 samples, over the window's",
        f"{m}jpeg_30000": "frame 0: header claims",
        f"{m}over_limit": f".mjpeg member is {member_limit + 1} bytes",
        f"{m}good_a": "key repeated in this shard",
        str(folder / "hostile-000001.tar"): "truncated or corrupt tar",
        str(folder / "hostile-000002.tar"): "gzip-compressed stream, not a plain tar",
    }
    return ["good_a", "good_b"], expected
