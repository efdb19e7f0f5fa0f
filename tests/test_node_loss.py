"""A whole Ray node lost mid-job (SIGKILL of its raylet and workers, as a spot CPU worker of
cluster.yaml disappears): the preprocessing job finishes on the nodes left and writes exactly
the samples of an uninterrupted run. The cluster is Ray's own multi-raylet test cluster
(`ray.cluster_utils.Cluster`) on this machine, driven by tests/node_loss_driver.py in a
process of its own."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, make_howto_corpus

DRIVER = Path(__file__).with_name("node_loss_driver.py")


def run_driver(mode: str, config: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(
        [sys.executable, str(DRIVER), mode, json.dumps(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in out, out["error"] + "\n" + proc.stderr[-4000:]
    return out


def samples(out: Path) -> dict[str, dict[str, str]]:
    """sample key -> {member extension: sha256 of its bytes}, over every shard."""
    found: dict[str, dict[str, str]] = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                digest = hashlib.sha256(t.extractfile(m).read()).hexdigest()
                assert ext not in found.setdefault(key, {}), f"{key}.{ext} written twice"
                found[key][ext] = digest
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_howto_corpus(tmp_path_factory.mktemp("node_loss_corpus"), videos=4)


def test_preprocessing_survives_the_loss_of_a_worker_node(corpus, ray_local, tmp_path):
    from preprocessing.config import PreprocessConfig
    from preprocessing.jobs import run_preprocess

    videos, captions = corpus
    config = {
        "source": "howto100m", "videos": str(videos), "captions": str(captions),
        "short_side": 96, "samples_per_shard": 2,
    }  # fmt: skip
    whole = run_preprocess(PreprocessConfig(**config, out=str(tmp_path / "whole")), False)
    lost = run_driver("preprocess", {**config, "out": str(tmp_path / "lost")})
    # The node died mid-job: shards were still to come, and one node is left.
    assert lost["shards_done_at_kill"] < whole["shards"]
    assert lost["nodes_alive_after"] == 1
    assert lost["summary"]["samples_written"] == whole["samples_written"] == 16
    assert lost["summary"]["shards"] == whole["shards"] >= 3
    assert samples(tmp_path / "lost") == samples(tmp_path / "whole")


def test_training_survives_the_loss_of_a_node(sample_shards, tmp_path):
    """2 workers on 1-CPU nodes; at step 3 the last rank's whole node dies (its raylet and
    it SIGKILLed): Ray Train restarts the group on the nodes left, from the step-2
    checkpoint, and the run ends at exactly max_steps with every step logged once."""
    overrides = [
        f"storage={tmp_path}", "name=node_loss", "log_every=1", "max_steps=6",
        f"data.howto100m={sample_shards['howto100m']}",
        f"data.audioset={sample_shards['audioset']}",
        f"data.tokenizer={sample_shards['tokenizer']}",
        "data.shuffle_buffer=16", "data.loader_workers=1", "eval.msrvtt_csv=",
        "eval.msrvtt_videos=", "checkpoint.every_steps=2", "deepspeed.micro_batch=4",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1",
    ]  # fmt: skip
    out = run_driver("train", {"overrides": overrides, "kill_step": 3})
    run_dir = tmp_path / "node_loss"
    assert (run_dir / ".fault_injected").read_text() == "3"
    assert out["nodes_alive_after"] == 3  # the head and two of the three worker nodes
    assert out["summary"]["steps"] == 6
    (record,) = [json.loads(x) for x in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert record["step"] == 2  # the last checkpoint before the node died
    assert record["loaded_checksum"] == pytest.approx(record["saved_checksum"], rel=1e-12)
    with open(run_dir / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the lost step 3 logged once, after the resume
