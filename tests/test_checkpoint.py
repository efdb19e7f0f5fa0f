"""Tests of training checkpoints and export with real DeepSpeed (CPU, gloo), no mocks.

One module fixture runs two ranks (world size 2 over gloo on 127.0.0.1) in subprocesses; for
ZeRO 0, 2 and 3 each rank trains the debug model with AdamW, saves checkpoints at steps 2 and 4
into its own folder (as in the Ray flow), and records the engine's full weights and reference
embeddings. The tests merge the per-rank folders like Ray does and check validation, the
choice of the newest valid checkpoint, consolidation, reloading, export and `vatt export`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from training.checkpoint import (
    CheckpointError,
    consolidated_state_dict,
    find_latest_checkpoint,
    read_trainer_state,
    validate_checkpoint,
)
from training.export import export_weights, load_pretrained

ROOT = Path(__file__).resolve().parent.parent
STAGES = (0, 2, 3)
STEPS = (2, 4)

# One rank: argv = rank world_size port out_dir. Imports the project from PYTHONPATH.
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, shutil, sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    import deepspeed

    from training.checkpoint import CheckpointError, load_into_engine, write_checkpoint
    from training.data.loader import DataConfig
    from training.pretrain.config import TrainConfig
    from training.model import build_model

    tokenizer_dir = out / "howto100m"
    if rank == 0:
        tokenizer_dir.mkdir(parents=True, exist_ok=True)
        (tokenizer_dir / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    train_cfg = TrainConfig(data=DataConfig(howto100m=str(tokenizer_dir)), preset="debug")


    def engine_for(stage, seed):
        torch.manual_seed(seed)
        model = build_model("debug")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        config = {"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": stage},
                  "steps_per_print": 10**9}
        return deepspeed.initialize(model=model, optimizer=opt, config=config)[0]


    def batch(gen):
        return {"video": torch.rand(2, 8, 64, 64, 3, generator=gen) * 2 - 1,
                "audio": torch.rand(2, 6400, generator=gen) * 2 - 1,
                "text_ids": torch.randint(1, 4096, (2, 2, 16), generator=gen)}


    class RunsCode:  # unpickling this runs `touch marker`: a hostile checkpoint's payload
        def __init__(self, marker):
            self.marker = str(marker)

        def __reduce__(self):
            return (os.system, (f"touch {self.marker}",))


    def full_state(engine):
        params = list(engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=hasattr(params[0], "ds_id")):
            return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    fixed = batch(torch.Generator().manual_seed(7))
    for stage in (0, 2, 3):
        engine = engine_for(stage, seed=0)
        for step in range(1, 5):
            outputs = engine(batch(gen))
            engine.backward(sum(v.pow(2).mean() for v in outputs.values()))
            engine.step()
            if step in (2, 4):
                state = {"samples_seen": 4 * step, "loader": {"epoch": 0, "start_step": step},
                         "config": train_cfg.to_dict()}
                write_checkpoint(engine, out / f"z{stage}" / f"step{step}" / f"rank{rank}",
                                 rank=rank, world_size=world, step=step, state=state)
        ref = {"state_dict": full_state(engine)}
        if stage == 2:  # plain module: the reference embeddings of the trained weights
            engine.module.eval()
            with torch.no_grad():
                ref["inputs"] = fixed
                ref["video"] = engine.module.encode_video(fixed["video"])
                ref["audio"] = engine.module.encode_audio(fixed["audio"])
                ref["text"] = engine.module.encode_text(fixed["text_ids"])
        # Resume check: rank 0 merges like Ray, a fresh engine (other seed) loads it.
        merged = out / f"z{stage}" / "merged_step4"
        dist.barrier()
        if rank == 0:
            for r in range(world):
                shutil.copytree(out / f"z{stage}" / "step4" / f"rank{r}", merged,
                                dirs_exist_ok=True)
        dist.barrier()
        fresh = engine_for(stage, seed=1)
        resumed = load_into_engine(fresh, merged)
        reloaded = full_state(fresh)
        ref["reload_step"] = resumed["step"]
        ref["reload_equal"] = all(torch.equal(reloaded[k], v) for k, v in ref["state_dict"].items())
        if stage == 2:  # resume from a checkpoint whose model states pickle runs code
            tampered, marker = out / "z2" / "tampered", out / "z2" / "code_ran"
            if rank == 0:
                shutil.copytree(merged, tampered)
                planted = tampered / "ds" / "mp_rank_00_model_states.pt"
                torch.save({"module": RunsCode(marker)}, planted)
                manifest = json.loads((tampered / "manifest_rank0.json").read_text())
                manifest["files"]["ds/mp_rank_00_model_states.pt"] = planted.stat().st_size
                (tampered / "manifest_rank0.json").write_text(json.dumps(manifest))
            dist.barrier()
            try:
                load_into_engine(engine_for(stage, seed=2), tampered)
                ref["tampered_resume"] = "loaded"
            except CheckpointError as e:
                ref["tampered_resume"] = str(e)
            ref["tampered_code_ran"] = marker.exists()
        if rank == 0:
            torch.save(ref, out / f"z{stage}" / "ref.pt")
        dist.barrier()
    dist.destroy_process_group()
    """
)

# Loads an export with nothing but the project's model code and reports sys.modules.
LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from training.export import load_exported

    export_dir, inputs_file, out_file = sys.argv[1:4]
    model = load_exported(export_dir)
    fixed = torch.load(inputs_file)
    with torch.no_grad():
        result = {"video": model.encode_video(fixed["video"]),
                  "audio": model.encode_audio(fixed["audio"]),
                  "text": model.encode_text(fixed["text_ids"]),
                  "training": model.training,
                  "heavy_modules": sorted(m for m in sys.modules
                                          if m.split(".")[0] in ("ray", "deepspeed"))}
    torch.save(result, out_file)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions")),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",  # two ranks on a shared 2-core machine
    )
    return env


def _merge(rank_dirs: list[Path], dest: Path) -> Path:
    """What Ray Train does with the folders every rank reported: copy them into one."""
    for rank_dir in rank_dirs:
        shutil.copytree(rank_dir, dest, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="module")
def ds_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds_ranks")
    script = out / "rank.py"
    script.write_text(RANK_SCRIPT)
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), "2", port, str(out)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return out


def _run_dir(ds_out: Path, stage: int, dest: Path) -> Path:
    """A Ray-like run folder: <dest>/checkpoint_00000000N per saved step, ranks merged."""
    for step in STEPS:
        ranks = [ds_out / f"z{stage}" / f"step{step}" / f"rank{r}" for r in range(2)]
        _merge(ranks, dest / f"checkpoint_{step:09d}")
    return dest


def _ref(ds_out: Path, stage: int) -> dict:
    return torch.load(ds_out / f"z{stage}" / "ref.pt", weights_only=True)


@pytest.mark.parametrize("stage", STAGES)
def test_checkpoint_is_valid_with_one_manifest_per_rank(ds_out, tmp_path, stage):
    run = _run_dir(ds_out, stage, tmp_path / "run")
    ckpt = run / "checkpoint_000000004"
    assert validate_checkpoint(ckpt) == (True, "ok")
    state = read_trainer_state(ckpt)
    assert state["step"] == 4 and state["world_size"] == 2 and state["zero_stage"] == stage
    assert state["samples_seen"] == 16 and state["loader"] == {"epoch": 0, "start_step": 4}
    assert state["config"]["preset"] == "debug" and state["model_config"]["name"] == "debug"
    manifests = [json.loads((ckpt / f"manifest_rank{r}.json").read_text()) for r in range(2)]
    assert [m["rank"] for m in manifests] == [0, 1]
    assert "trainer_state.json" in manifests[0]["files"]
    assert "trainer_state.json" not in manifests[1]["files"]
    if stage:  # each rank lists exactly its own ZeRO shard
        for r, manifest in enumerate(manifests):
            shards = [f for f in manifest["files"] if "zero_pp_rank" in f and "optim" in f]
            assert shards == [f"ds/zero_pp_rank_{r}_mp_rank_00_optim_states.pt"]
    # A fresh engine of another seed loaded this checkpoint and got the same weights.
    ref = _ref(ds_out, stage)
    assert ref["reload_step"] == 4 and ref["reload_equal"]


def test_truncated_file_invalidates_and_the_older_checkpoint_is_used(ds_out, tmp_path):
    run = _run_dir(ds_out, 2, tmp_path / "run")
    newest = run / "checkpoint_000000004"
    shard = newest / "ds" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    size = shard.stat().st_size
    with shard.open("r+b") as f:
        f.truncate(123)
    ok, reason = validate_checkpoint(newest)
    assert not ok
    assert reason == f"ds/zero_pp_rank_1_mp_rank_00_optim_states.pt: 123 bytes, expected {size}"
    latest, skipped = find_latest_checkpoint(run)
    assert latest == run / "checkpoint_000000002"
    assert skipped == [(newest, reason)]


def test_missing_manifest_invalidates_and_is_skipped(ds_out, tmp_path):
    run = _run_dir(ds_out, 3, tmp_path / "run")
    newest = run / "checkpoint_000000004"
    (newest / "manifest_rank1.json").unlink()  # rank 1 died before finishing its save
    assert validate_checkpoint(newest) == (False, "missing manifest_rank1.json")
    latest, skipped = find_latest_checkpoint(run)
    assert latest == run / "checkpoint_000000002"
    assert skipped == [(newest, "missing manifest_rank1.json")]


def test_other_broken_checkpoints(ds_out, tmp_path):
    run = _run_dir(ds_out, 0, tmp_path / "run")
    ckpt = run / "checkpoint_000000004"
    (ckpt / "trainer_state.json").unlink()
    assert validate_checkpoint(ckpt) == (False, "missing trainer_state.json")
    # Manifests of another save mixed in: step mismatch.
    older = run / "checkpoint_000000002"
    shutil.copy(ckpt / "manifest_rank1.json", older / "manifest_rank1.json")
    ok, reason = validate_checkpoint(older)
    assert not ok and reason.startswith("manifest_rank1.json: step 4")
    assert find_latest_checkpoint(run)[0] is None
    assert find_latest_checkpoint(tmp_path / "nothing") == (None, [])


@pytest.mark.parametrize("stage", STAGES)
def test_consolidated_state_dict_equals_engine_weights(ds_out, tmp_path, stage):
    ckpt = _run_dir(ds_out, stage, tmp_path / "run") / "checkpoint_000000004"
    expected = _ref(ds_out, stage)["state_dict"]
    merged = consolidated_state_dict(ckpt)
    assert sorted(merged) == sorted(expected)
    for key, value in expected.items():
        assert merged[key].dtype == value.dtype, key
        assert torch.equal(merged[key], value), key
    # BatchNorm statistics are part of it (zero_to_fp32 includes buffers) and were trained.
    assert merged["video_head.bn1.num_batches_tracked"].item() == 4
    assert not torch.equal(merged["video_head.bn1.running_var"], torch.ones(64))


def test_export_then_load_without_ray_or_deepspeed(ds_out, tmp_path):
    ckpt = _run_dir(ds_out, 2, tmp_path / "run") / "checkpoint_000000004"
    out = export_weights(ckpt, tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "vatt-safetensors-v1" and config["preset"] == "debug"
    assert config["trained_steps"] == 4 and config["source_checkpoint"] == str(ckpt.resolve())
    assert config["model_config"]["name"] == "debug" and config["tokenizer"] == "tokenizer.json"
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'

    ref = _ref(ds_out, 2)
    inputs = tmp_path / "inputs.pt"
    torch.save(ref["inputs"], inputs)
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    result_file = tmp_path / "result.pt"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(inputs), str(result_file)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(result_file, weights_only=True)
    assert result["heavy_modules"] == []
    assert result["training"] is False
    for modality in ("video", "audio", "text"):
        for key, value in ref[modality].items():
            torch.testing.assert_close(result[modality][key], value, rtol=0, atol=1e-6)


def test_export_refuses_an_invalid_checkpoint(ds_out, tmp_path):
    ckpt = _run_dir(ds_out, 0, tmp_path / "run") / "checkpoint_000000004"
    (ckpt / "manifest_rank1.json").unlink()
    with pytest.raises(ValueError, match="not a valid checkpoint: missing manifest_rank1.json"):
        export_weights(ckpt, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_cli_export_of_a_run_dir_names_skipped_checkpoints(ds_out, tmp_path, capsys):
    run = _run_dir(ds_out, 3, tmp_path / "run")
    (run / "checkpoint_000000004" / "manifest_rank0.json").unlink()
    assert main(["export", str(run), str(tmp_path / "export")]) == 0
    captured = capsys.readouterr()
    assert "checkpoint_000000002 (step 2)" in captured.out
    assert str(tmp_path / "export" / "model.safetensors") in captured.out
    assert "skipped" in captured.err and "missing manifest_rank0.json" in captured.err
    assert json.loads((tmp_path / "export" / "config.json").read_text())["trained_steps"] == 2


def test_cli_export_bad_paths_exit_2_with_one_line(ds_out, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vatt export: error:") and "missing" in err

    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["export", str(empty), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no valid checkpoint" in err

    ckpt = _run_dir(ds_out, 2, tmp_path / "run") / "checkpoint_000000004"
    (ckpt / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"")
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ds/mp_rank_00_model_states.pt: 0 bytes" in err


def test_export_help_shows_how_to_load():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "from training.export import from_pretrained" in proc.stdout


def test_files_without_an_architecture_load_as_vatt(ds_out, tmp_path):
    """Checkpoints and exports written before they recorded their architecture hold VATT:
    with the field removed (and the manifest's size of trainer_state.json updated, as an old
    save wrote it) both still load, to the same weights."""
    from training.export import load_exported, load_pretrained
    from training.model import VATT

    ckpt = _run_dir(ds_out, 2, tmp_path / "run") / "checkpoint_000000004"
    state_file = ckpt / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state.pop("architecture") == "vatt"
    state_file.write_text(json.dumps(state, indent=2))
    manifest_file = ckpt / "manifest_rank0.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["trainer_state.json"] = state_file.stat().st_size
    manifest_file.write_text(json.dumps(manifest))
    assert validate_checkpoint(ckpt) == (True, "ok")

    model, source = load_pretrained(ckpt)
    assert isinstance(model, VATT) and source.kind == "checkpoint" and source.step == 4
    export = export_weights(ckpt, tmp_path / "export")
    config = json.loads((export / "config.json").read_text())
    assert config.pop("architecture") == "vatt"
    (export / "config.json").write_text(json.dumps(config))
    reloaded = load_exported(export)
    assert isinstance(reloaded, VATT)
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in reloaded.state_dict().items())


class RunsCode:
    """Unpickling this runs `touch marker`: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(ckpt: Path, rel: str, marker: Path) -> None:
    """Replace `rel` with a pickle that runs code and fix the manifest listing it, as anyone
    who can write the checkpoint bucket could."""
    torch.save({"module": RunsCode(marker)}, ckpt / rel)
    for manifest_file in ckpt.glob("manifest_rank*.json"):
        manifest = json.loads(manifest_file.read_text())
        if rel in manifest["files"]:
            manifest["files"][rel] = (ckpt / rel).stat().st_size
            manifest_file.write_text(json.dumps(manifest))
    assert validate_checkpoint(ckpt) == (True, "ok")
    assert "posix.system" in torch.serialization.get_unsafe_globals_in_checkpoint(ckpt / rel)


def test_resume_refuses_a_checkpoint_whose_pickle_runs_code(ds_out):
    ref = _ref(ds_out, 2)
    reason = ref["tampered_resume"]
    assert "refused ds/mp_rank_00_model_states.pt: its pickle calls posix.system" in reason
    assert "\n" not in reason and not ref["tampered_code_ran"]


@pytest.mark.parametrize(
    "planted", ["ds/mp_rank_00_model_states.pt", "ds/zero_pp_rank_1_mp_rank_00_optim_states.pt"]
)
def test_export_and_pretrained_refuse_a_pickle_that_runs_code(ds_out, tmp_path, capsys, planted):
    ckpt = _run_dir(ds_out, 2, tmp_path / "run") / "checkpoint_000000004"
    marker = tmp_path / "code_ran"
    _plant(ckpt, planted, marker)
    with pytest.raises(CheckpointError) as e:
        export_weights(ckpt, tmp_path / "export")
    assert f"refused {planted}: its pickle calls posix.system" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="posix.system"):
        load_pretrained(ckpt)  # --pretrained / init=
    assert main(["export", str(ckpt), str(tmp_path / "export")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "posix.system" in err
    assert not marker.exists() and not (tmp_path / "export" / "model.safetensors").exists()


def test_save_pretrained_folder_loads_with_from_pretrained(tmp_path):
    """A model in memory -> the from_pretrained layout (weights, config, tokenizer, model card)
    -> the same model back, in eval mode."""
    from training.export import from_pretrained, save_pretrained
    from training.model import VATT, make_config

    torch.manual_seed(0)
    model = VATT(make_config("debug")).eval()
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text('{"fake": "tokenizer"}')
    out = save_pretrained(
        model, tmp_path / "pretrained", tokenizer=tokenizer, trained_steps=7,
        training_config={"preset": "debug", "optim": {"lr": 0.001}},
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json",
    ]  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["preset"], config["trained_steps"]) == (
        "vatt",
        "debug",
        7,
    )
    assert config["training_config"]["optim"]["lr"] == 0.001
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: vatt-ray") and "7 training steps" in card
    assert "No evaluation was measured" in card and "| parameters | 0.8 M |" in card
    loaded = from_pretrained(out)
    assert not loaded.training
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
