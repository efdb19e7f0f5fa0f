"""Training config pieces that need no Ray: the bundled presets, the DeepSpeed dict and its
batch arithmetic, the learning-rate schedule, and path handling."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from pipeline.commands.train import build_config, preset_names
from pipeline.configs import from_dict
from pipeline.errors import UsageError
from training.pretrain.config import TrainConfig
from training.pretrain.ds_config import batch_arithmetic, batch_warning, deepspeed_dict
from training.pretrain.optim import OptimConfig, build_optimizer, lr_at


def cfg(**over) -> TrainConfig:
    data = {"data": {"howto100m": "shards/howto100m"}}
    for key, value in over.items():
        section, _, leaf = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[leaf] = value
    return from_dict(TrainConfig, data)


def test_bundled_presets_resolve():
    assert set(preset_names()) == {
        *("debug", "bbs", "mbs", "lbs", "ma-medium", "official"),
        *("alpro-debug", "alpro-prompter-debug"),
    }
    for name in preset_names():
        c = build_config(name, [])
        assert c.model_config().name.lower() == c.preset.lower()
    debug = build_config("debug", [])
    assert debug.scaling.num_workers == 2 and not debug.scaling.use_gpu
    assert debug.deepspeed.zero_stage == 2 and debug.eval.enabled
    for name in ("bbs", "mbs", "lbs", "ma-medium"):
        c = build_config(name, [])
        # The paper's global batch on a GPU cluster, in bf16, with its schedule (spec section 4).
        assert c.deepspeed.micro_batch * c.deepspeed.grad_accum * c.scaling.num_workers == 2048
        assert (
            c.scaling.use_gpu and deepspeed_dict(c, c.scaling.num_workers, True)["bf16"]["enabled"]
        )
        assert (c.optim.lr, c.optim.end_lr, c.optim.warmup_steps, c.optim.decay_steps) == (
            1e-4, 5e-5, 10_000, 500_000,
        )  # fmt: skip
    assert (
        build_config("debug", ["model.droptoken_rate=0.25"]).model_config().droptoken_rate == 0.25
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["optim.lr=-1"], "optim"),
        (["deepspeed.offload_params=true"], "zero_stage=3"),
        (["deepspeed.precision=fp16"], "precision"),
        (["eval.msrvtt_csv=x.csv", "eval.msrvtt_videos="], "eval"),
        (["data.howto100m=", "data.audioset="], "data.howto100m"),
        (["model.video.num_heads=7"], "num_heads"),
        (["name=a/b"], "name"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UsageError, match=message):
        build_config("debug", override)


def test_deepspeed_dict_and_batch_arithmetic():
    c = cfg(**{"deepspeed.micro_batch": 8, "deepspeed.grad_accum": 4, "deepspeed.zero_stage": 3})
    d = deepspeed_dict(c, world_size=16, on_gpu=True)
    assert d["train_batch_size"] == 8 * 4 * 16 == 512
    assert d["train_micro_batch_size_per_gpu"] == 8 and d["gradient_accumulation_steps"] == 4
    assert d["zero_optimization"]["stage"] == 3 and d["bf16"]["enabled"]
    assert batch_arithmetic(c, 16) == (
        "global batch 512 = micro 8 x accumulation 4 x world 16; "
        "contrastive batch 128 = micro x world"
    )
    assert "128 clips" in batch_warning(c, 16) and "not the global batch 512" in batch_warning(
        c, 16
    )
    assert batch_warning(cfg(**{"deepspeed.micro_batch": 8}), 16) is None
    cpu = deepspeed_dict(c, world_size=2, on_gpu=False)
    assert not cpu["bf16"]["enabled"] and not cpu["zero_optimization"]["overlap_comm"]
    # Offload, clipping and the free-form `extra` (merged last, nested).
    c = cfg(
        **{
            "deepspeed.offload_optimizer": True,
            "optim.grad_clip": 1.0,
            "deepspeed.extra": {"zero_optimization": {"reduce_bucket_size": 1000}},
        }
    )
    d = deepspeed_dict(c, 2, on_gpu=False)
    assert d["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert d["zero_optimization"]["reduce_bucket_size"] == 1000
    assert d["zero_optimization"]["stage"] == 2 and d["gradient_clipping"] == 1.0
    assert d["zero_force_ds_cpu_optimizer"] is False
    assert deepspeed_dict(cfg(**{"deepspeed.precision": "bf16"}), 2, False)["bf16"]["enabled"]


def test_schedule_warmup_then_quarter_cosine():
    o = OptimConfig()  # the paper: 1e-4, 10k warm-up, 5e-5 at step 500k
    assert lr_at(0, o) == pytest.approx(1e-8)
    assert lr_at(4_999, o) == pytest.approx(5e-5)
    assert lr_at(9_999, o) == pytest.approx(1e-4)
    mid = 10_000 + (500_000 - 10_000) // 2
    assert lr_at(mid, o) == pytest.approx(5e-5 + 5e-5 * math.cos(math.pi / 4))
    assert lr_at(500_000, o) == pytest.approx(5e-5) and lr_at(900_000, o) == pytest.approx(5e-5)
    lrs = [lr_at(s, o) for s in range(10_000, 500_001, 10_000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay, never back up


def test_optimizer_follows_the_schedule():
    o = OptimConfig(lr=1e-3, end_lr=1e-4, warmup_steps=2, decay_steps=6)
    model = torch.nn.Linear(3, 1)
    opt, sched = build_optimizer(model, o)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, o) for s in range(8)])
    assert opt.param_groups[0]["betas"] == (0.9, 0.999) and opt.param_groups[0]["weight_decay"] == 0


def test_paths_become_absolute_for_workers():
    c = cfg(**{"data.audioset": "s3://bucket/audioset", "eval.msrvtt_csv": "m.csv",
               "eval.msrvtt_videos": "videos"}).with_absolute_paths()  # fmt: skip
    assert c.data.howto100m == os.path.abspath("shards/howto100m")
    assert c.data.audioset == "s3://bucket/audioset"  # URIs untouched
    assert os.path.isabs(c.eval.msrvtt_csv) and os.path.isabs(c.storage)
    assert c.data.tokenizer_path() == os.path.abspath("shards/howto100m") + "/tokenizer.json"


def test_print_config_redacts_credentials_in_uris(capsys):
    from pipeline.cli import main

    uri = "s3://AKIDTEST:SECRETxyz@bucket/runs"
    assert main(["train", "--config", "debug", f"storage={uri}", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "SECRETxyz" not in out and '"storage": "s3://<redacted>@bucket/runs"' in out


def test_print_config_states_global_and_contrastive_batch(capsys):
    from pipeline.cli import main

    argv = ["train", "--config", "debug", "deepspeed.grad_accum=4", "--print-config"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays a config
    assert "global batch 128 = micro 16 x accumulation 4 x world 2" in captured.err
    assert "contrastive batch 32" in captured.err and "warning" in captured.err
