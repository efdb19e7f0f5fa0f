"""Ray Train + DeepSpeed pretraining on real shards: ZeRO-2 with 2 workers, resume, a truncated
checkpoint, ZeRO-3, and config errors from the CLI. A rank SIGKILLed mid-run (with its whole
node) and the run finishing from its last checkpoint is tests/test_node_loss.py's training test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from pipeline.configs import from_dict, set_dotted
from training.checkpoint import find_latest_checkpoint
from training.export import export_weights, load_exported
from training.pretrain.config import TrainConfig
from training.pretrain.loop import run_training

pytestmark = pytest.mark.slow


def make_config(shards: dict, storage: Path, name: str, **extra) -> TrainConfig:
    data = {
        "name": name,
        "storage": str(storage),
        "preset": "debug",
        "data": {
            "howto100m": str(shards["howto100m"]),
            "audioset": str(shards["audioset"]),
            "shuffle_buffer": 16,
            "loader_workers": 1,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 2, "decay_steps": 20},
        "deepspeed": {"zero_stage": 2, "micro_batch": 4},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "checkpoint": {"every_steps": 3, "keep": 2},
        "max_steps": 6,
        "log_every": 1,
    }
    for key, value in extra.items():
        set_dotted(data, key, value)
    return from_dict(TrainConfig, data)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def resumes(run_dir: Path) -> list[dict]:
    path = run_dir / "resumes.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def zero2_run(sample_shards, ray_local, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    cfg = make_config(
        sample_shards,
        storage,
        "zero2",
        **{
            "eval.msrvtt_csv": str(sample_shards["msrvtt_csv"]),
            "eval.msrvtt_videos": str(sample_shards["msrvtt_videos"]),
        },
    )
    return cfg, run_training(cfg)


def test_two_workers_zero2_trains_and_checkpoints(zero2_run):
    cfg, summary = zero2_run
    run_dir = Path(cfg.run_dir())
    assert summary["steps"] == 6 and summary["world_size"] == 2
    assert summary["batch"].startswith("global batch 8 = micro 4 x accumulation 1 x world 2;")
    assert summary["global_batch"] == summary["contrastive_batch"] == 8
    rows = read_metrics(run_dir)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert float(r["loss"]) > 0 and float(r["clips_per_s"]) > 0
        assert 0.0 <= float(r["data_wait_frac"]) <= 1.0
    # The schedule reached the workers: warm-up 2 steps to 1e-3, then the cosine decays.
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3) and lrs[-1] < 1e-3
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    # Ray kept the newest `keep` checkpoints, both complete.
    ckpts = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())
    assert [c.name for c in ckpts] == ["checkpoint_000000003", "checkpoint_000000006"]
    latest, skipped = find_latest_checkpoint(run_dir)
    assert Path(latest).name == "checkpoint_000000006" and not skipped
    # Held-out retrieval ran before the first and after the last step on all 8 videos.
    for key in ("eval_before", "eval_after"):
        assert summary[key]["num_scored"] == 8 and 0 <= summary[key]["t2v_r1"] <= 1
    assert summary["checkpoint"].endswith("checkpoint_000000006")


def test_same_command_resumes_at_the_right_step_with_equal_weights(zero2_run, sample_shards):
    cfg, _ = zero2_run
    run_dir = Path(cfg.run_dir())
    longer = make_config(sample_shards, Path(cfg.storage), cfg.name, max_steps=9)
    summary = run_training(longer)
    assert summary["steps"] == 9
    (record,) = resumes(run_dir)
    assert record["step"] == 6 and record["checkpoint"].endswith("checkpoint_000000006")
    assert record["loaded_checksum"] == pytest.approx(record["saved_checksum"], rel=1e-12)
    # Telemetry continues without duplicated steps.
    assert [int(r["step"]) for r in read_metrics(run_dir)] == list(range(1, 10))
    # eval_before survives the restart (it travels in the checkpoint).
    assert summary["eval_before"]["num_scored"] == 8


def test_truncated_checkpoint_is_skipped(zero2_run, sample_shards):
    cfg, _ = zero2_run
    run_dir = Path(cfg.run_dir())
    newest = run_dir / "checkpoint_000000009"
    victim = max((p for p in newest.rglob("*.pt")), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    summary = run_training(make_config(sample_shards, Path(cfg.storage), cfg.name, max_steps=10))
    assert summary["steps"] == 10
    record = resumes(run_dir)[-1]
    assert record["step"] == 6, record  # the older complete checkpoint, not the truncated one
    assert any("checkpoint_000000009" in note and victim.name in note for note in record["skipped"])


def write_shard_with_garbage(sample_shards: dict, folder: Path) -> None:
    """One shard: two garbage samples (one per rank under the every-n-th split), then six
    good HowTo100M samples copied from the real shards."""
    import webdataset as wds

    from preprocessing.shard_format import iter_samples, list_shards, members

    shards = list_shards(str(sample_shards["howto100m"]))
    good = [
        {k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"}
        for _, sample in zip(range(6), iter_samples(shards))
    ]
    folder.mkdir()
    with wds.TarWriter(str(folder / "mixed-000000.tar")) as w:
        for i in range(2):
            video = members(json.loads(good[i]["json"]))[0]  # the video member, whatever codec
            w.write({**good[i], "__key__": f"garbage{i}", video: b"\xff\xd8 not a video"})
        for sample in good:
            w.write(sample)


def test_zero3_smoke_corrupt_samples_skipped_and_export(sample_shards, ray_local, tmp_path):
    write_shard_with_garbage(sample_shards, tmp_path / "mixed")
    cfg = make_config(
        sample_shards,
        tmp_path,
        "zero3",
        **{
            "deepspeed.zero_stage": 3,
            "max_steps": 3,
            "checkpoint.every_steps": 3,
            "data.howto100m": str(tmp_path / "mixed"),
            "data.tokenizer": str(sample_shards["tokenizer"]),
        },
    )
    summary = run_training(cfg)
    assert summary["steps"] == 3 and summary["final"]["loss"] > 0
    # Corrupt samples were skipped, counted over both ranks and named per rank.
    assert summary["skipped_samples"] >= 2
    for rank in (0, 1):
        text = (Path(cfg.run_dir()) / f"skipped_samples_rank{rank}.txt").read_text()
        assert f"garbage{rank}: " in text
    out = export_weights(summary["checkpoint"], tmp_path / "export")
    model = load_exported(out).eval()
    video = torch.zeros(1, 8, 64, 64, 3)
    emb = model.encode_video(video)["video_vt"]
    assert emb.shape == (1, 32) and torch.isfinite(emb).all()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("deepspeed.zero_stage=5", "deepspeed.zero_stage=5"),
        ("optim.lrx=1", "optim.lrx"),
        ("model.droptoken_rate=1.5", "droptoken_rate"),
        ("data.howto100m=/nonexistent/shards", "data.howto100m=/nonexistent/shards"),
    ],
)
def test_bad_config_is_one_line_exit_2(override, message, vatt_in_process, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, err = vatt_in_process("train", "--config", "debug", override)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
