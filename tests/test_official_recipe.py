"""The official code's recipe options (docs/model.md, docs/training.md "official"), each
against the behaviour it replaces: position LayerNorm + dropout and d^-0.5 tables, Model 2's
temporal positions, text BatchNorm over valid captions, the half-period cosine, and the
`official` preset selecting them all."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.commands.train import build_config
from training.model import build_model
from training.model.heads import MaskedBatchNorm1d
from training.pretrain.optim import OptimConfig, lr_at


def _batch(B=4, K=2, L=6, audio_captions=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, 4096, (B, K, L), generator=g)
    text[B - audio_captions :] = 0  # AudioSet-style examples: all-padding captions
    return {
        "video": torch.rand(B, 8, 64, 64, 3, generator=g) * 2 - 1,
        "audio": torch.rand(B, 6400, generator=g) * 2 - 1,
        "text_ids": text,
    }


def test_official_positions_add_layernorm_dropout_and_wider_tables():
    torch.manual_seed(0)
    paper = build_model("debug")
    official = build_model("debug", position_embedding="official", position_dropout=0.1)
    assert isinstance(paper.video_embed.pos_post, torch.nn.Identity)
    norm, drop = official.video_embed.pos_post
    assert isinstance(norm, torch.nn.LayerNorm) and drop.p == 0.1
    assert isinstance(official.audio_embed.pos_post[0], torch.nn.LayerNorm)
    d = official.cfg.video.d_model
    std = float(
        torch.cat([p.detach().flatten() for p in official.video_embed.pos.parameters()]).std()
    )
    assert std == pytest.approx(d**-0.5, rel=0.1)  # paper: 0.02
    assert float(paper.video_embed.pos.temporal.detach().std()) < 0.03
    # Normalised after the positions: every token has zero mean, unit variance (eval: no drop).
    official.eval()
    tokens, _ = official.video_embed(_batch()["video"])
    body = tokens[:, 1:]
    torch.testing.assert_close(body.mean(-1), torch.zeros(body.shape[:2]), atol=1e-4, rtol=0)
    # The same checkpoint keys apart from the new LayerNorm.
    extra = set(official.state_dict()) - set(paper.state_dict())
    assert extra and all(".pos_post." in k for k in extra)


def test_model2_temporal_positions_make_the_slice_order_matter():
    kw = dict(video_backbone="factorised_encoder", video_temporal_layers=1, droptoken_rate=0.0)
    torch.manual_seed(0)
    with_pos = build_model("debug", video_temporal_positions=True, **kw).eval()
    torch.manual_seed(0)
    without = build_model("debug", **kw).eval()
    assert with_pos.backbone("video").temporal_pos.shape[0] == with_pos.cfg.tokenizer.video_grid[0]
    assert without.backbone("video").temporal_pos is None
    for model in (with_pos, without):  # only Model 2's own table may tell the slices apart
        model.video_embed.pos.temporal.data.zero_()
    video = _batch()["video"]  # (B, 8, H, W, 3): two 4-frame slices
    B, T = video.shape[:2]
    swapped = video.reshape(B, 2, T // 2, *video.shape[2:]).flip(1).reshape(video.shape)
    reverse = swapped  # the same slices in the other order
    with torch.no_grad():
        a, b = without.encode_video(video), without.encode_video(reverse)
        c, d = with_pos.encode_video(video), with_pos.encode_video(reverse)
    # Model 2's temporal encoder without positions is a set function of the slices.
    torch.testing.assert_close(a["video_features"], b["video_features"], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(c["video_features"], d["video_features"], atol=1e-4)


def test_masked_batchnorm_matches_batchnorm_on_the_valid_rows():
    torch.manual_seed(0)
    x = torch.randn(10, 6) * 3 + 1
    valid = torch.tensor([True] * 7 + [False] * 3)
    x[~valid] = 0.0  # padding rows that would drag the statistics to zero
    ref = torch.nn.BatchNorm1d(6, eps=1e-5, momentum=0.1)
    masked = MaskedBatchNorm1d(6, eps=1e-5, momentum=0.1)
    masked.load_state_dict(ref.state_dict())  # the same keys
    out = masked(x, valid)
    torch.testing.assert_close(out[valid], ref(x[valid]))
    torch.testing.assert_close(masked.running_mean, ref.running_mean)
    torch.testing.assert_close(masked.running_var, ref.running_var)
    # All rows valid: exactly BatchNorm1d.
    ref2, m2 = torch.nn.BatchNorm1d(6), MaskedBatchNorm1d(6, 1e-5, 0.1)
    torch.testing.assert_close(m2(x), ref2(x))
    m2.eval(), ref2.eval()
    torch.testing.assert_close(m2(x), ref2(x))


def test_text_bn_statistics_skip_audioset_padding_in_the_model():
    torch.manual_seed(0)
    model = build_model("debug", head={"text_bn_valid_only": True}).train()
    batch = _batch(audio_captions=2)
    out = model(batch)
    assert out["text_vt"].shape == (4, 2, model.cfg.head.d_vt)
    valid = out["text_vt"][:2].reshape(-1, model.cfg.head.d_vt)
    # The valid captions' outputs are normalised over themselves: zero mean per feature.
    torch.testing.assert_close(valid.mean(0), torch.zeros(valid.shape[1]), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    plain = build_model("debug").train()(batch)["text_vt"][:2].reshape(-1, valid.shape[1])
    assert plain.mean(0).abs().max() > 0.1  # the padding entered the statistics


def test_half_cosine_schedule():
    cfg = OptimConfig(lr=1e-4, end_lr=0.0, warmup_steps=5000, decay_steps=105_000)
    half = OptimConfig(**{**cfg.__dict__, "schedule": "half_cosine"})
    assert lr_at(4999, half) == pytest.approx(1e-4)
    assert lr_at(55_000, half) == pytest.approx(0.5e-4)  # half-way: half the lr
    assert lr_at(55_000, cfg) == pytest.approx(1e-4 * math.cos(math.pi / 4))
    assert lr_at(105_000, half) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="linear")


def test_official_preset_selects_every_option():
    cfg = build_config("official", [])
    model = cfg.model_config()
    assert model.position_embedding == "official" and model.video_temporal_positions
    assert model.head.text_bn_valid_only
    assert cfg.optim.schedule == "half_cosine" and cfg.optim.warmup_steps == 5000
    aug = cfg.data.augment
    assert aug.jitter_prob == 0.8 and aug.brightness_mode == "add" and aug.hue == 0.2
    assert aug.brightness == pytest.approx(32 / 255)
    assert aug.contrast == aug.saturation == 0.4


def test_official_colour_jitter_probability_and_additive_brightness():
    """DMVR's color_default_augm: jitter with p 0.8, brightness +-32/255 added, hue 0.2;
    the loader's device path applies the same values as the one-clip CPU transform."""
    from training.data.augment import (
        AugmentConfig,
        augment_batch,
        color_jitter,
        draw_jitter,
        jitter_identity,
    )

    cfg = AugmentConfig(brightness=32 / 255, brightness_mode="add", hue=0.2, jitter_prob=0.8)
    gen = torch.Generator().manual_seed(0)
    draws = [draw_jitter(cfg, gen) for _ in range(2000)]
    untouched = sum(d == jitter_identity(cfg) for d in draws) / len(draws)
    assert untouched == pytest.approx(0.2, abs=0.03)
    b = torch.tensor([d[0] for d in draws])
    assert b.abs().max() <= 32 / 255 and b.min() < -0.1 and b.max() > 0.1
    assert max(abs(d[3]) for d in draws) <= 0.2 and max(abs(d[3]) for d in draws) > 0.15
    # The default draws nothing extra: its stream and values are unchanged by the option.
    default = AugmentConfig()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert draw_jitter(default, g1) == draw_jitter(AugmentConfig(jitter_prob=1.0), g2)
    assert jitter_identity(default) == (1.0, 1.0, 1.0, 0.0)
    # Device path == CPU path for the same values, additive brightness included.
    video = torch.randint(0, 256, (1, 2, 8, 8, 3), dtype=torch.uint8)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    jitter = torch.tensor([draw_jitter(cfg, gen_a)])
    while jitter[0, 0] == 0.0:  # a clip that was jittered
        jitter = torch.tensor([draw_jitter(cfg, gen_a)])
        draw_jitter(cfg, gen_b)
    out, _ = augment_batch(video, torch.zeros(1, 4, dtype=torch.int16), jitter, torch.zeros(1), cfg)
    cpu = color_jitter(video[0].permute(0, 3, 1, 2).float() / 255, cfg, gen_b)
    torch.testing.assert_close(out[0], cpu.permute(0, 2, 3, 1) * 2 - 1, atol=1e-5, rtol=0)
