"""Tests of the VATT model: sizes vs the paper, tokens, DropToken, positions, gradients, FLOPs."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch
from torch.utils import flop_counter

from training.model import (
    PRESETS,
    VATT,
    ModelConfig,
    TokenizerConfig,
    build_model,
    make_config,
)
from training.model.config import HeadConfig, TransformerConfig
from training.model.droptoken import drop_tokens, num_kept
from training.model.flops import forward_flops, transformer_flops
from training.model.positions import VideoPositions
from training.model.presets import PAPER_PRESET_PARAMS_M, PAPER_SIZE_PARAMS_M, SIZES
from training.model.tokenizers import AudioTokenizer, VideoTokenizer
from training.objectives.vatt import LossConfig, total_loss

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small ops on a shared 2-core box are dominated by OpenMP spinning with 2 threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(B=2, frames=4, size=32, samples=1280, K=2, L=6, vocab=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    text_ids = torch.randint(1, vocab, (B, K, L), generator=g)
    text_ids[0, 0, L // 2 :] = 0  # some padding
    return {
        "video": torch.rand(B, frames, size, size, 3, generator=g) * 2 - 1,
        "audio": torch.rand(B, samples, generator=g) * 2 - 1,
        "text_ids": text_ids,
        "text_mask": torch.ones(B),
    }


# ---------------------------------------------------------------- sizes vs the paper
# What the paper's per-size count holds: the video tower without heads, i.e. the voxel
# tokenizer (Conv3d 4x16x16x3 -> d) + factorised position tables + aggregation token +
# encoder blocks + final LayerNorm. The blocks + final LN alone are 3.2% / 2.5% / 1.2% below
# the paper for Base / Medium / Large, so the paper's number includes the voxel embedding.
@pytest.mark.parametrize(("preset", "size"), [("BBS", "base"), ("MBS", "medium"), ("LBS", "large")])
def test_video_tower_params_match_paper(preset, size):
    counts = build_model(preset, device="meta").parameter_counts()["video"]
    ours = counts["tokenizer"] + counts["backbone"]
    paper = PAPER_SIZE_PARAMS_M[size] * 1e6
    assert abs(ours - paper) / paper < 0.02, (preset, ours, paper)
    # Blocks + final LN, in closed form: 12 d^2 + 13 d per layer (+ 2 d).
    cfg = SIZES[size]
    d, f = cfg.d_model, cfg.d_ff
    per_layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    assert counts["backbone"] == cfg.num_layers * per_layer + 2 * d


@pytest.mark.parametrize("preset", ["BBS", "MBS", "LBS"])
def test_preset_totals_close_to_paper_without_word_embedding(preset):
    # The paper's 197/264/415 M fit our totals minus the 2**16 x d text word embedding
    # (the official code uses frozen word2vec vectors there), to within 2%.
    model = build_model(preset, device="meta")
    total = sum(p.numel() for p in model.parameters())
    total -= model.text_embed.tokenizer.embed.weight.numel()
    paper = PAPER_PRESET_PARAMS_M[preset] * 1e6
    assert abs(total - paper) / paper < 0.02, (preset, total / 1e6)


def test_ma_medium_shares_one_backbone():
    model = build_model("MA-Medium", device="meta")
    assert model.backbone("video") is model.backbone("audio") is model.backbone("text")
    assert list(model.backbones) == ["shared"]
    counts = model.parameter_counts()
    assert (
        counts["shared"]["backbone"]
        == build_model("MBS", device="meta").parameter_counts()["video"]["backbone"]
    )
    assert all(counts[m]["backbone"] == 0 for m in ("video", "audio", "text"))


# ---------------------------------------------------------------- tokens and positions
def test_paper_token_counts():
    video = torch.zeros(1, 32, 224, 224, 3)
    tokens, grid = VideoTokenizer((4, 16, 16), 8)(video)
    assert grid == (8, 14, 14) and tokens.shape == (1, 1568, 8)
    audio = torch.zeros(1, 153_600)
    assert AudioTokenizer(128, 8)(audio).shape == (1, 1200, 8)
    tok = TokenizerConfig()
    assert tok.video_grid == (8, 14, 14) and tok.audio_tokens == 1200


def test_channels_first_and_last_agree():
    model = build_model("debug").eval()
    batch = _batch(frames=8, size=64, samples=6400)
    last = model.encode_video(batch["video"])["video_vt"]
    first = model.encode_video(batch["video"].permute(0, 4, 1, 2, 3))["video_vt"]
    torch.testing.assert_close(first, last)
    with pytest.raises(ValueError, match="RGB"):
        model.encode_video(torch.zeros(2, 4, 4, 32, 32))


def _paper_grid_model(**overrides):
    # Debug widths, paper input grid: cheap, but the position tables are 8x14x14 / 1200.
    return build_model("debug", tokenizer=TokenizerConfig(vocab_size=4096), **overrides)


def test_droptoken_counts_in_train_and_eval():
    model = _paper_grid_model(droptoken_rate=0.5)
    video = torch.zeros(2, 32, 224, 224, 3)
    audio = torch.zeros(2, 153_600)
    model.train()
    assert model.video_embed(video)[0].shape[1] == 1 + 784
    assert model.audio_embed(audio).shape[1] == 1 + 600
    model.eval()
    assert model.video_embed(video)[0].shape[1] == 1 + 1568
    assert model.audio_embed(audio).shape[1] == 1 + 1200


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_drop_tokens_keeps_round_fraction_per_example(rate):
    B, N = 8, 1568
    ids = torch.arange(N, dtype=torch.float32)
    x = ids[None, :, None].expand(B, N, 3).clone()  # token i carries value i
    kept = drop_tokens(x, rate)
    assert kept.shape == (B, round((1 - rate) * N), 3) == (B, num_kept(N, rate), 3)
    kept_ids = kept[..., 0]
    # Kept tokens are real, distinct tokens in their original order.
    assert torch.all(kept_ids[:, 1:] > kept_ids[:, :-1])
    if rate > 0:
        # Independent draws per example: no two examples keep the same subset.
        assert len({tuple(row.tolist()) for row in kept_ids}) == B


def test_droptoken_never_drops_aggregation_token():
    model = build_model("debug", droptoken_rate=0.75).train()
    x, _ = model.video_embed(_batch(frames=8, size=64)["video"])
    agg = model.video_embed.agg_token.expand(2, 1, -1)
    torch.testing.assert_close(x[:, :1], agg)


def test_positions_interpolate_to_320():
    model = _paper_grid_model().eval()
    video = torch.rand(1, 32, 320, 320, 3) * 2 - 1
    tokens, _ = model.video_embed(video)
    assert tokens.shape == (1, 1 + 8 * 20 * 20, 64)
    out = model.encode_video(video)
    assert out["video_vt"].shape == (1, 32) and torch.isfinite(out["video_vt"]).all()
    # Longer audio interpolates the 1-D table too.
    assert model.audio_embed(torch.zeros(1, 128 * 1500)).shape == (1, 1501, 64)


def test_positions_at_trained_grid_are_the_tables():
    pos = VideoPositions((2, 3, 4), 5)
    for p in pos.parameters():
        torch.nn.init.normal_(p)
    out = pos(torch.zeros(1, 24, 5), (2, 3, 4)).reshape(2, 3, 4, 5)
    expected = (
        pos.temporal[:, None, None] + pos.vertical[None, :, None] + pos.horizontal[None, None]
    )
    torch.testing.assert_close(out, expected)


def test_text_padding_does_not_change_features():
    model = build_model("debug").eval()
    ids = torch.randint(1, 4096, (3, 7))
    ids[1, 4:] = 0
    padded = torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(
        model.encode_text(ids)["text_vt"], model.encode_text(padded)["text_vt"]
    )
    # All-padding captions (AudioSet examples) still give finite embeddings.
    assert torch.isfinite(model.encode_text(torch.zeros(2, 16, dtype=torch.long))["text_vt"]).all()


# ---------------------------------------------------------------- forward / backward
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_parameter_gets_a_gradient(preset):
    # Big presets keep their widths, heads, embeddings and tower structure (MA: one shared
    # tower) but only 2 layers, so the test runs in seconds on a CPU; inputs are tiny
    # (4 frames x 32 x 32, 1280 samples, 2 x 6 words), so positions are interpolated too.
    overrides = {} if preset == "debug" else {"backbone": {"num_layers": 2}}
    torch.manual_seed(0)
    model = build_model(preset, **overrides).train()
    out = model(_batch(vocab=model.cfg.tokenizer.vocab_size))
    assert out["video_va"].shape == (2, model.cfg.head.d_va)
    assert out["audio_va"].shape == (2, model.cfg.head.d_va)
    assert out["video_vt"].shape == (2, model.cfg.head.d_vt)
    assert out["text_vt"].shape == (2, 2, model.cfg.head.d_vt)
    # The real objective: a head that the loss does not reach would show up here.
    total_loss(out, LossConfig())["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_bf16_autocast_forward_is_finite():
    model = build_model("debug").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_batch(frames=8, size=64, samples=6400))
    for name, value in out.items():
        assert torch.isfinite(value.float()).all(), name
    sum(v.float().sum() for v in out.values()).backward()


def test_grad_checkpointing_matches_plain():
    torch.manual_seed(0)
    plain = build_model("debug", droptoken_rate=0.0).train()
    ckpt = build_model(
        "debug",
        droptoken_rate=0.0,
        video={"grad_checkpointing": True},
        audio={"grad_checkpointing": True},
        text={"grad_checkpointing": True},
    ).train()
    ckpt.load_state_dict(plain.state_dict())
    batch = _batch(frames=8, size=64, samples=6400)
    grads = []
    for model in (plain, ckpt):
        out = model(batch)
        sum(v.sum() for v in out.values()).backward()
        grads.append(model.video_embed.tokenizer.proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_head_bn_modes():
    paper = build_model("debug", head={"bn": "paper"})
    official = build_model("debug", head={"bn": "official"})
    assert isinstance(paper.audio_head.bn, torch.nn.BatchNorm1d)
    assert isinstance(official.audio_head.bn, torch.nn.Identity)
    assert isinstance(official.text_head.bn, torch.nn.Identity)
    assert isinstance(official.video_head.to_vt.act, torch.nn.ReLU)
    # The shared names (fc1/bn1/fc2/bn2/to_vt) are identical in both modes.
    assert {k for k in paper.state_dict() if k.startswith("video_head.")} == {
        k for k in official.state_dict() if k.startswith("video_head.")
    }


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        TransformerConfig(num_layers=2, d_model=100, d_ff=200, num_heads=3)
    with pytest.raises(ValueError, match="droptoken_rate"):
        ModelConfig(droptoken_rate=1.0)
    with pytest.raises(ValueError, match="head.bn"):
        HeadConfig(bn="tf")
    with pytest.raises(ValueError, match="height"):
        TokenizerConfig(height=100)
    with pytest.raises(ValueError, match="shared_backbone"):
        make_config("MBS", shared_backbone=True)
    with pytest.raises(ValueError, match="unknown model config field"):
        make_config("MBS", depth=3)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("XXL")


def test_config_round_trips_through_dict():
    import dataclasses

    cfg = make_config("MA-Medium", droptoken_rate=0.25)
    assert ModelConfig.from_dict(dataclasses.asdict(cfg)) == cfg


# ---------------------------------------------------------------- FLOPs
def test_flops_reproduce_spec_numbers():
    bbs = make_config("BBS")
    video = forward_flops(bbs, droptoken_rate=0.0)["video"]
    assert video["tokens"] == 1569
    assert round((video["patch_embed"] + video["blocks"]) / 1e9, 1) == 364.7
    video = forward_flops(bbs, droptoken_rate=0.5)["video"]
    assert round((video["patch_embed"] + video["blocks"]) / 1e9, 1) == 163.5
    mbs = forward_flops(make_config("MBS"), droptoken_rate=0.5)
    assert abs(mbs["training"] / 1e12 - 1.18) < 0.02  # spec: "about 1.18 TFLOP"
    # 24 N d^2 + 4 N^2 d per layer when d_ff = 4 d.
    n, d = 100, 64
    assert transformer_flops(n, TransformerConfig(1, d, 4 * d, 4)) == 24 * n * d * d + 4 * n * n * d


def _flop_counter() -> flop_counter.FlopCounterMode:
    # torch 2.13's FlopCounterMode registers the CUDA SDPA kernels only: on CPU,
    # scaled_dot_product_attention runs aten._scaled_dot_product_flash_attention_for_cpu,
    # which it would silently count as 0. Map it to the same formula.
    aten = torch.ops.aten
    custom = {}
    cpu_sdpa = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    # Registry keys are op packets (aten.op), not overloads (aten.op.default).
    if cpu_sdpa is not None and cpu_sdpa not in flop_counter.flop_registry:

        def sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

        custom[cpu_sdpa] = sdpa_cpu
    return flop_counter.FlopCounterMode(display=False, custom_mapping=custom)


def test_analytic_flops_match_flop_counter():
    small = SIZES["small"]
    tok = TokenizerConfig(
        frames=8, height=96, width=96, audio_samples=128 * 150, vocab_size=1024, captions=2, words=8
    )
    cfg = make_config(
        "debug", tokenizer=tok, video=small, audio=small, text=small, head=HeadConfig()
    )
    model = VATT(cfg).eval()
    B = 2
    batch = {
        "video": torch.rand(B, 8, 96, 96, 3),
        "audio": torch.rand(B, 128 * 150),
        "text_ids": torch.randint(1, 1024, (B, 2, 8)),
    }
    counter = _flop_counter()
    with torch.no_grad(), counter:
        model(batch)
    measured = counter.get_total_flops() / B
    analytic = forward_flops(cfg, droptoken_rate=0.0)["forward"]
    assert abs(measured - analytic) / analytic < 0.05, (measured, analytic)
    # Attention must be in the count: without it, we would be ~10% short on 145 tokens.
    assert any("attention" in str(op) for op in counter.get_flop_counts()["Global"])


# ---------------------------------------------------------------- layering guard
def test_model_and_loss_import_no_distribution_or_app():
    objectives = ROOT / "training" / "objectives"
    files = list((ROOT / "training" / "model").glob("*.py")) + list(objectives.glob("*.py"))
    banned = ("ray", "deepspeed", "pipeline", "preprocessing")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
