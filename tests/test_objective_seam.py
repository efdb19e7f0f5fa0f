"""The objective seam: a toy objective, written here in a few lines, runs the real pretraining
loop (Ray Train, 2 CPU workers, DeepSpeed ZeRO-2, the shard loader, checkpoints, telemetry)
without a change to the loop."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass

import pytest
from torch import nn

from pipeline.commands.train import build_config
from training.data.loader import ClipShape
from training.objectives.base import Objective


@dataclass(frozen=True)
class ToyConfig:
    hidden: int = 4


class ToyModel(nn.Module):
    """Mean colour of the clip -> a guess of the audio's loudness."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(3, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))

    def forward(self, inputs: dict) -> dict:
        colour = inputs["video"].mean(dim=(1, 2, 3))  # (B, T, H, W, 3) -> (B, 3)
        return {"loudness": self.net(colour).squeeze(-1)}  # (B,)


class ToyObjective(Objective):
    name = "toy"
    loss_parts = {"loudness_mse": "mse"}

    def build_model(self, fresh: bool) -> nn.Module:
        return ToyModel(ToyConfig())

    def model_config(self):
        return ToyConfig()

    def clip_shape(self) -> ClipShape:
        return ClipShape(frames=8, height=64, width=64, audio_samples=6400)

    def model_inputs(self, batch, device, dtype):
        return {"video": batch["video"].to(device, dtype)}

    def losses(self, outputs, batch, device, *, rank, world_size):
        target = batch["audio"].to(device).abs().mean(dim=1)  # (B,)
        mse = (outputs["loudness"].float() - target).pow(2).mean()
        return {"loss": mse, "loudness_mse": mse.detach()}

    def flops_per_clip(self) -> float:
        return 0.0


@pytest.fixture(scope="module")
def toy_run(sample_shards, ray_local, tmp_path_factory):
    from ray import cloudpickle

    from training.pretrain.loop import run_training

    # Ray workers cannot import this test module by name: ship its classes by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tmp_path_factory.mktemp("toy")
    cfg = build_config(
        "debug",
        [
            f"storage={root}",
            "name=toy",
            f"data.howto100m={sample_shards['howto100m']}",
            f"data.audioset={sample_shards['audioset']}",
            f"data.tokenizer={sample_shards['tokenizer']}",
            "data.shuffle_buffer=16",
            "data.loader_workers=1",
            "eval.msrvtt_csv=",
            "eval.msrvtt_videos=",
            "max_steps=4",
            "log_every=1",
            "checkpoint.every_steps=2",
        ],
    )
    return run_training(cfg, objective=ToyObjective()), root / "toy"


def test_a_toy_objective_trains_in_the_real_loop(toy_run):
    summary, run_dir = toy_run
    assert summary["steps"] == 4 and summary["world_size"] == 2
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    # The loop logged the toy's own loss part, and nothing of VATT's.
    assert "loudness_mse" in rows[0] and "nce_va" not in rows[0]
    assert all(float(r["loss"]) == pytest.approx(float(r["loudness_mse"])) for r in rows)
    state = json.loads((run_dir / "checkpoint_000000004" / "trainer_state.json").read_text())
    assert state["architecture"] == "toy" and state["model_config"] == {"hidden": 4}
    assert state["step"] == 4


def test_the_toy_runs_progress_line_names_its_part():
    from training.telemetry import format_progress

    line = format_progress(3, 4, {"loss": 0.5, "loudness_mse": 0.5}, ToyObjective.loss_parts)
    assert "loss 0.5 (mse 0.5)" in line
