"""ALPRO's two stages through the real pretraining loop (Ray Train, 2 CPU workers, DeepSpeed
ZeRO-2, the shard loader): the prompter, then the full model with PEM from the frozen prompter;
checkpoints that record the architecture, resume, export, held-out retrieval through
encode_video / encode_text."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from pipeline.commands.train import build_config
from training.data.wordpiece import load_wordpiece


def _overrides(sample_shards, root, name: str, steps: int) -> list[str]:
    return [
        f"storage={root}",
        f"name={name}",
        "data.webvid=",
        f"data.howto100m={sample_shards['howto100m']}",  # captioned clips: any text source
        "data.shuffle_buffer=16",
        f"max_steps={steps}",
        "log_every=1",
        "checkpoint.every_steps=2",
        "deepspeed.micro_batch=4",
    ]


def _rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def alpro_runs(sample_shards, ray_local, tmp_path_factory):
    from training.pretrain.loop import run_training

    root = tmp_path_factory.mktemp("alpro")
    prompter_cfg = build_config(
        "alpro-prompter-debug", _overrides(sample_shards, root, "prompter", 4)
    ).prepared()
    prompter = run_training(prompter_cfg)
    main = _overrides(sample_shards, root, "main", 4) + [
        f"alpro.prompter={root / 'prompter'}",
        "model.num_entities=12",
        # A 4-step prompter is near uniform over 12 entities (top ~0.1): keep every label.
        "alpro.pem_threshold=0.0",
        f"eval.msrvtt_csv={sample_shards['msrvtt_csv']}",
        f"eval.msrvtt_videos={sample_shards['msrvtt_videos']}",
        "eval.num_windows=1",
    ]
    first = run_training(build_config("alpro-debug", main).prepared())
    # The same command with more steps resumes from checkpoint 4.
    resumed = run_training(build_config("alpro-debug", [*main, "max_steps=6"]).prepared())
    return root, prompter, first, resumed


def test_prompter_stage_trains_vtc_with_a_wordpiece_tokenizer(alpro_runs):
    root, prompter, _, _ = alpro_runs
    run = root / "prompter"
    assert prompter["steps"] == 4 and prompter["world_size"] == 2
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert "vtc" in rows[0] and "vtm" not in rows[0]
    assert all(float(r["loss"]) == pytest.approx(float(r["vtc"])) for r in rows)
    load_wordpiece(str(run / "tokenizer.json"))  # built from the captions, special ids fixed
    state = json.loads((run / "checkpoint_000000004" / "trainer_state.json").read_text())
    assert state["architecture"] == "alpro" and state["model_config"]["fusion_layers"] == 0


def test_full_stage_uses_the_prompter_and_resumes(alpro_runs):
    root, _, first, resumed = alpro_runs
    run = root / "main"
    assert first["steps"] == 4 and resumed["steps"] == 6
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    for part in ("vtc", "vtm", "mlm", "pem"):
        assert all(float(r[part]) >= 0 for r in rows), part
    assert any(float(r["pem"]) > 0 for r in rows)  # pseudo-labels passed the filter
    total = [float(r["vtc"]) + float(r["vtm"]) + float(r["mlm"]) + float(r["pem"]) for r in rows]
    assert [float(r["loss"]) for r in rows] == pytest.approx(total, rel=1e-5)
    resumes = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert resumes[-1]["step"] == 4
    assert resumes[-1]["saved_checksum"] == pytest.approx(resumes[-1]["loaded_checksum"])
    # The prompter's tokenizer is the main run's; the entity list was built from the corpus.
    cfg = json.loads((run / "train_config.json").read_text())
    assert cfg["data"]["tokenizer"] == str(root / "prompter" / "tokenizer.json")
    assert len((run / "entities.txt").read_text().split()) == 12
    state = json.loads((run / "checkpoint_000000006" / "trainer_state.json").read_text())
    assert state["architecture"] == "alpro" and state["model_config"]["num_entities"] == 12
    # Held-out retrieval ran through encode_video / encode_text before and after.
    assert 0 <= first["eval_before"]["t2v_r1"] <= 1 and "t2v_r1" in resumed["eval_after"]


def test_export_and_checkpoint_give_the_same_encoders(alpro_runs, tmp_path):
    from training.export import export_weights, load_exported, load_pretrained

    root, _, _, _ = alpro_runs
    checkpoint = root / "main" / "checkpoint_000000006"
    export_weights(str(checkpoint), tmp_path / "export")
    exported = load_exported(tmp_path / "export")
    restored, _ = load_pretrained(root / "main")
    assert (tmp_path / "export" / "tokenizer.json").is_file()
    video = torch.rand(2, 4, 64, 64, 3) * 2 - 1
    ids = torch.tensor([[2, 40, 41, 3], [2, 50, 3, 0]])
    for model in (exported, restored):
        assert type(model).__name__ == "Alpro"
    torch.testing.assert_close(
        exported.encode_video(video)["video_vt"], restored.encode_video(video)["video_vt"]
    )
    torch.testing.assert_close(
        exported.encode_text(ids)["text_vt"], restored.encode_text(ids)["text_vt"]
    )
    assert exported.match_logits(video, ids).shape == (2, 2)
