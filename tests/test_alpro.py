"""ALPRO model and objective: parameter counts, losses vs NumPy references, the exact 2-rank
gather, masking statistics, crop bounds, hard negatives, pseudo-labels, tokenizer, entities."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.config_io import ConfigError
from training.data.wordpiece import (
    CLS_ID,
    MASK_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    build_wordpiece,
)
from training.model import Alpro, build_architecture, make_alpro_config
from training.model.alpro import ALPRO_RELEASE_PARAMS_M, crop_pool, hard_negatives
from training.objectives.alpro import (
    AlproLossConfig,
    AlproObjective,
    Prompter,
    content_word_mask,
    crop_cell_sizes,
    crop_video,
    entity_vocabulary,
    mask_tokens,
    mlm_loss,
    pem_loss,
    prompt_ids,
    random_crops,
    read_entities,
    vocabulary_pieces,
    vtc_loss,
    vtm_loss,
)

# One post-LN BERT-base layer: q, k, v, output dense (768x768 + bias each), 2 LayerNorms,
# intermediate 768->3072 and output 3072->768 dense.
BERT_LAYER = 4 * (768 * 768 + 768) + 2 * 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768)
# BERT-base embeddings: 30522 words, 512 positions, 2 token types, LayerNorm.
BERT_EMBEDDINGS = (30522 + 512 + 2) * 768 + 2 * 768


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- parameter counts
def test_alpro_base_matches_the_release_and_bert_base():
    with torch.device("meta"):
        model = Alpro(make_alpro_config("alpro-base"))
    counts = {part: c["total"] for part, c in model.parameter_counts().items()}
    counts["total"] = sum(counts.values())
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # tied counted once
    assert counts["total"] / 1e6 == pytest.approx(ALPRO_RELEASE_PARAMS_M, abs=0.05)
    text = model.text_encoder
    for block in [*text.blocks.blocks, *model.fusion.blocks]:
        assert n_params(block) == BERT_LAYER == 7_087_872
    assert len(text.blocks.blocks) == 6 and len(model.fusion.blocks) == 6
    embeddings = n_params(text.word_embed) + n_params(text.pos_embed)
    embeddings += n_params(text.type_embed) + n_params(text.norm)
    assert embeddings == BERT_EMBEDDINGS
    # TimeSformer-B/16 at 4 frames: 121,255,680; ours lacks the [CLS] position row (768).
    assert counts["video"] == 121_255_680 - 768
    # The PEM head as the release's: 768 -> 1536 -> 1000 entities.
    assert n_params(model.pem_head) == 768 * 1536 + 1536 + 1536 * 1000 + 1000


def test_prompter_preset_has_no_fusion_or_heads():
    with torch.device("meta"):
        prompter = Alpro(make_alpro_config("alpro-prompter-base"))
    assert not hasattr(prompter, "fusion") and not hasattr(prompter, "pem_head")
    assert prompter.parameter_counts()["fusion"]["total"] == 0


def test_architecture_round_trip_from_a_config_dict():
    cfg = make_alpro_config("alpro-debug", num_entities=8)
    model = build_architecture("alpro", dataclasses.asdict(cfg))
    assert isinstance(model, Alpro) and model.cfg == cfg


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="model.height"):
        make_alpro_config("alpro-debug", height=70)
    with pytest.raises(ValueError, match="num_entities"):
        make_alpro_config("alpro-debug", fusion_layers=0)
    with pytest.raises(ValueError, match="unknown ALPRO preset"):
        make_alpro_config("alpro-huge")


# ---------------------------------------------------------------- forward / backward
def _debug_batch(B=4, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    text_ids = torch.randint(5, 200, (B, L), generator=g)
    text_ids[:, 0], text_ids[:, -1], text_ids[0, -3:] = CLS_ID, SEP_ID, 0
    return {
        "video": torch.rand(B, 4, 64, 64, 3, generator=g) * 2 - 1,
        "text_ids": text_ids,
        "mlm_ids": mask_tokens(text_ids, 1024, 0.5, g)[0],
        "pem_mask": random_crops(B, (4, 4), (0.3, 0.5), g)[1],
    }


def test_every_parameter_gets_a_gradient_from_the_four_losses():
    torch.manual_seed(0)
    model = Alpro(make_alpro_config("alpro-debug"))
    for block in model.video_encoder.blocks.blocks:  # zero at init: open the temporal path
        torch.nn.init.normal_(block.temporal_fc.weight, std=0.02)
    batch = _debug_batch()
    out = model(batch)
    B = batch["video"].shape[0]
    assert out["vtm_logits"].shape == (3 * B, 2) and out["pem_logits"].shape == (B, 32)
    labels = torch.where(batch["mlm_ids"] != batch["text_ids"], batch["text_ids"], -100)
    labels[:, 1] = batch["text_ids"][:, 1]  # at least one target
    soft = torch.softmax(torch.randn(B, 32), dim=1)
    loss = (
        vtc_loss(out["video_vt"], out["text_vt"], out["temp"])
        + vtm_loss(out["vtm_logits"])
        + mlm_loss(out["mlm_logits"], labels)
        + pem_loss(out["pem_logits"], soft, torch.ones(B, dtype=torch.bool))
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    # Row 1 of the token-type table is never used (every token is segment 0).
    assert missing == [], missing


def test_padding_does_not_change_the_text_embedding():
    model = Alpro(make_alpro_config("alpro-prompter-debug")).eval()
    ids = torch.tensor([[CLS_ID, 10, 11, SEP_ID]])
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    a, b = model.encode_text(ids)["text_vt"], model.encode_text(padded)["text_vt"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_crop_pool_averages_the_crop_patches():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (B, h*w=4, D)
    mask = torch.tensor([[[True, False], [True, False]], [[False, False], [False, True]]])
    pooled = crop_pool(tokens, mask)
    torch.testing.assert_close(pooled[0], (tokens[0, 0] + tokens[0, 2]) / 2)
    torch.testing.assert_close(pooled[1], tokens[1, 3])


# ---------------------------------------------------------------- losses vs NumPy
def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _np_vtc(v, t, temp):
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    sim = v @ t.T / temp
    idx = np.arange(len(v))
    return (-_log_softmax(sim)[idx, idx].mean() - _log_softmax(sim.T)[idx, idx].mean()) / 2


def test_vtc_matches_numpy():
    g = torch.Generator().manual_seed(1)
    v, t = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    loss = vtc_loss(v, t, torch.tensor(0.07))
    assert loss.item() == pytest.approx(_np_vtc(v.numpy(), t.numpy(), 0.07), rel=1e-5)


def test_vtm_mlm_pem_match_numpy():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(9, 2, generator=g)
    labels = np.array([1] * 3 + [0] * 6)
    ref = -_log_softmax(logits.numpy())[np.arange(9), labels].mean()
    assert vtm_loss(logits).item() == pytest.approx(ref, rel=1e-5)
    # Positives weighted 2: a weighted mean, both classes with equal total weight.
    w = np.where(labels == 1, 2.0, 1.0)
    picked = _log_softmax(logits.numpy())[np.arange(9), labels]
    ref = -(w * picked).sum() / w.sum()
    assert vtm_loss(logits, pos_weight=2.0).item() == pytest.approx(ref, rel=1e-5)

    mlm_logits = torch.randn(2, 5, 11, generator=g)
    targets = torch.full((2, 5), -100)
    targets[0, 1], targets[1, 3], targets[1, 4] = 7, 2, 10
    lp = _log_softmax(mlm_logits.reshape(10, 11).numpy())
    picked = [(0 * 5 + 1, 7), (1 * 5 + 3, 2), (1 * 5 + 4, 10)]
    ref = -np.mean([lp[i, c] for i, c in picked])
    assert mlm_loss(mlm_logits, targets).item() == pytest.approx(ref, rel=1e-5)
    assert mlm_loss(mlm_logits, torch.full((2, 5), -100)).item() == 0.0  # none selected

    pem_logits = torch.randn(4, 6, generator=g)
    soft = torch.softmax(torch.randn(4, 6, generator=g), dim=1)
    keep = torch.tensor([True, False, True, True])
    per_row = -(soft.numpy() * _log_softmax(pem_logits.numpy())).sum(axis=1)
    assert pem_loss(pem_logits, soft, keep).item() == pytest.approx(
        per_row[keep.numpy()].mean(), rel=1e-5
    )
    assert pem_loss(pem_logits, soft, torch.zeros(4, dtype=torch.bool)).item() == 0.0


# ---------------------------------------------------------------- two ranks, gloo
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vtc_worker(rank, world_size, port, video, text, results):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        B = video.shape[0] // world_size
        rows = slice(rank * B, (rank + 1) * B)
        v = video[rows].clone().requires_grad_()
        t = text[rows].clone().requires_grad_()
        temp = torch.tensor(0.07, requires_grad=True)
        loss = vtc_loss(v, t, temp, rank=rank, world_size=world_size)
        loss.backward()
        results[rank] = (loss.item(), v.grad.clone(), t.grad.clone())
    finally:
        dist.destroy_process_group()


def test_vtc_two_rank_gloo_equals_single_process():
    world_size, B, D = 2, 3, 8
    g = torch.Generator().manual_seed(3)
    video, text = torch.randn(world_size * B, D, generator=g), torch.randn(world_size * B, D)
    v, t = video.clone().requires_grad_(), text.clone().requires_grad_()
    single = vtc_loss(v, t, torch.tensor(0.07))
    single.backward()
    manager = mp.get_context("spawn").Manager()
    results = manager.dict()
    mp.spawn(_vtc_worker, args=(world_size, _free_port(), video, text, results), nprocs=world_size)
    losses = [results[r][0] for r in range(world_size)]
    assert sum(losses) / world_size == pytest.approx(single.item(), abs=1e-6)
    # Different ranks see different positives (the global row rank * B + i): not all equal.
    assert losses[0] != pytest.approx(losses[1])
    for i, ref in ((1, v.grad), (2, t.grad)):
        per_rank = torch.cat([results[r][i] for r in range(world_size)]) / world_size
        torch.testing.assert_close(per_rank, ref, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- VTM hard negatives
def test_hard_negatives_are_never_the_positive():
    torch.manual_seed(0)
    for B in (2, 3, 8):
        # Positives far more similar than anything else: still never drawn.
        feats = torch.eye(B, 16) * 10 + 0.01 * torch.randn(B, 16)
        for _ in range(200):
            neg_video, neg_text = hard_negatives(feats, feats, torch.tensor(0.07))
            assert not (neg_video == torch.arange(B)).any()
            assert not (neg_text == torch.arange(B)).any()


def test_hard_negatives_follow_the_similarities():
    torch.manual_seed(0)
    v = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    counts = torch.zeros(4)
    for _ in range(400):
        neg_video, _ = hard_negatives(v, v, torch.tensor(0.1))
        counts[neg_video[0]] += 1  # text 0's negative video
    assert counts[0] == 0 and counts[2] > 0.9 * 400  # the look-alike clip 2 is the hard one


def test_hard_negatives_skip_near_duplicates_of_the_positive():
    torch.manual_seed(0)
    # Clips 0 and 1 are near-duplicates (cosine 0.99): without the filter they are each
    # other's hard negative; with it, never. A batch of duplicates only falls back to all.
    v = torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.14, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    neg_video, neg_text = hard_negatives(v, v, torch.tensor(0.1))
    assert neg_video[0] == 1 and neg_text[1] == 0
    for _ in range(200):
        neg_video, neg_text = hard_negatives(v, v, torch.tensor(0.1), duplicate_cos=0.9)
        assert neg_video[0] not in (0, 1) and neg_video[1] not in (0, 1)
        assert neg_text[0] not in (0, 1) and neg_text[1] not in (0, 1)
    same = torch.ones(3, 4) + 0.01 * torch.randn(3, 4)
    neg_video, neg_text = hard_negatives(same, same, torch.tensor(0.1), duplicate_cos=0.9)
    assert not (neg_video == torch.arange(3)).any() and not (neg_text == torch.arange(3)).any()


# ---------------------------------------------------------------- MLM masking
def test_masking_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 50), generator=g)
    ids[:, 0], ids[:, -1], ids[:, 40:49] = CLS_ID, SEP_ID, 0
    ids[::7, 5] = UNK_ID
    mlm_ids, labels = mask_tokens(ids, 1000, 0.15, g)
    selected = labels != -100
    special = ids < len(SPECIAL_TOKENS)
    assert not (selected & special).any()  # [PAD], [CLS], [SEP], [UNK] never targets
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(mlm_ids[~selected], ids[~selected])  # nothing else changes
    rate = selected.sum() / (~special).sum()
    assert rate.item() == pytest.approx(0.15, abs=0.01)
    n = selected.sum().item()
    masked = (mlm_ids[selected] == MASK_ID).sum().item() / n
    kept = (mlm_ids[selected] == ids[selected]).sum().item() / n
    assert masked == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1 + 0.9 / 995 * 0.1, abs=0.02)  # 10% kept (+ random hits)
    replaced = mlm_ids[selected & (mlm_ids != MASK_ID) & (mlm_ids != ids)]
    assert replaced.numel() / n == pytest.approx(0.1, abs=0.02)
    assert (replaced >= len(SPECIAL_TOKENS)).all() and (replaced < 1000).all()


def test_content_words_are_masked_whole_and_only_them():
    captions = ["working with wood and woodworking tools", "a woodworker saws the wood"] * 3
    for vocab in (60, 300):  # 60: even "and" splits into pieces; 300: whole words
        tok = build_wordpiece(captions, vocab_size=vocab, max_len=16)
        enc = tok.encode_batch(captions[:2])
        ids = torch.tensor([e.ids + [0] * (16 - len(e.ids)) for e in enc])
        mask = content_word_mask(ids, vocabulary_pieces(tok))
        for row, e in enumerate(enc):
            words = captions[row].split()
            for p, w in enumerate(e.word_ids):
                expected = w is not None and words[w] not in ("with", "and", "a", "the")
                assert bool(mask[row, p]) == expected, (vocab, row, e.tokens[p])
        assert not mask[ids == 0].any()
    # mask_tokens selects them on top of the random rate; specials never.
    g = torch.Generator().manual_seed(0)
    mlm_ids, labels = mask_tokens(ids, 300, 0.01, g, also=mask | (ids == CLS_ID))
    assert (labels[mask] == ids[mask]).all() and (labels[ids < len(SPECIAL_TOKENS)] == -100).all()


# ---------------------------------------------------------------- crops
def test_crop_bounds_area_and_patch_grid():
    g = torch.Generator().manual_seed(0)
    for h, w in ((4, 4), (14, 14), (7, 12)):
        boxes, mask = random_crops(500, (h, w), (0.3, 0.5), g)
        top, left, rows, cols = boxes.T
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + rows <= h).all() and (left + cols <= w).all()
        area = rows * cols / (h * w)
        assert (area >= 0.3 - 1e-9).all() and (area <= 0.5 + 1e-9).all()
        assert torch.equal(mask.sum(dim=(1, 2)), rows * cols)
        possible = sum((h - r + 1) * (w - c + 1) for r, c in crop_cell_sizes(h, w, 0.3, 0.5))
        # Every size and position is drawn (4x4: all 18 boxes in 500 draws).
        assert len(set(map(tuple, boxes.tolist()))) >= min(possible, 100)
    assert (2, 3) in crop_cell_sizes(4, 4, 0.3, 0.5) and (4, 4) not in crop_cell_sizes(
        4, 4, 0.3, 0.5
    )
    with pytest.raises(ValueError, match="crop_min"):
        crop_cell_sizes(2, 2, 0.3, 0.45)


def test_crop_video_cuts_the_box_and_resizes_to_the_frame():
    H = W = 64
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    frame = torch.stack([ys, xs, torch.zeros_like(ys)], dim=-1).float()  # pixel = its position
    video = frame[None, None].expand(1, 2, H, W, 3)
    out = crop_video(video, torch.tensor([[1, 2, 2, 1]]), patch=16)  # rows 16-47, cols 32-47
    assert out.shape == video.shape
    assert 16 <= out[0, 0, ..., 0].min() and out[0, 0, ..., 0].max() <= 47
    assert 32 <= out[0, 0, ..., 1].min() and out[0, 0, ..., 1].max() <= 47


# ---------------------------------------------------------------- prompter and PEM labels
def test_confidence_filter_compares_the_probability_not_the_index():
    model = Alpro(make_alpro_config("alpro-prompter-debug")).eval()
    prompts = torch.randint(5, 200, (2, 6, 8))
    prompter = Prompter(model, prompts, threshold=0.5)
    assert prompter.entity_features.shape == (6, 32)
    assert not any(p.requires_grad for p in prompter.parameters())
    probs = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.5], [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]])
    prompter.probabilities = lambda video: probs  # the filter alone
    soft, keep = prompter.pseudo_labels(torch.zeros(2, 4, 64, 64, 3))
    # Row 0: top probability 0.5 >= 0.5 (argmax index 5): kept. Row 1: 0.9 at index 0: kept;
    # the release's `argmax < threshold` would drop row 1 and keep row 0 for any threshold.
    assert keep.tolist() == [True, True]
    prompter.threshold = 0.6
    assert prompter.pseudo_labels(torch.zeros(2, 4, 64, 64, 3))[1].tolist() == [False, True]
    prompter.train()
    assert not prompter.training and not prompter.model.training


def test_prompter_soft_labels_are_distributions():
    model = Alpro(make_alpro_config("alpro-prompter-debug")).eval()
    prompter = Prompter(model, torch.randint(5, 200, (3, 5, 8)), threshold=0.0)
    soft, keep = prompter.pseudo_labels(torch.rand(3, 4, 64, 64, 3))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(3))
    assert keep.all()


# ---------------------------------------------------------------- tokenizer and entities
CAPTIONS = [
    "A dog runs on the beach at sunset",
    "Two dogs playing with a red ball in the park",
    "A chef chops onions in a kitchen",
    "Close up of a chef cooking pasta",
    "The dog sleeps next to a kitten",
]


def test_wordpiece_splits_unseen_words_instead_of_unk():
    tok = build_wordpiece(CAPTIONS * 3, vocab_size=200, max_len=12)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = tok.encode("Dogs chopping onions")
    assert enc.ids[0] == CLS_ID and enc.ids[-1] == SEP_ID
    assert UNK_ID not in enc.ids  # "chopping" -> pieces seen in "chops"
    long = tok.encode(" ".join(["dog"] * 30))
    assert len(long.ids) == 12 and long.ids[-1] == SEP_ID  # truncated, [SEP] kept
    ids = prompt_ids(tok, ["dog", "chef"], 12)
    assert ids.shape == (12, 2, 12) and (ids[:, :, 0] == CLS_ID).all()


def test_entity_vocabulary_most_frequent_content_words(tmp_path):
    assert entity_vocabulary(CAPTIONS, 3) == ["chef", "dog", "ball"]
    with pytest.raises(ValueError, match="num_entities=100"):
        entity_vocabulary(CAPTIONS, 100)
    f = tmp_path / "entities.txt"
    f.write_text("dog\n\ncat\ndog\nbird\n")
    assert read_entities(f, 3) == ["dog", "cat", "bird"]
    with pytest.raises(ValueError, match=r"entities.txt: 3 distinct"):
        read_entities(f, 4)
    with pytest.raises(ValueError, match="missing.txt"):
        read_entities(tmp_path / "missing.txt", 1)


# ---------------------------------------------------------------- the objective and its config
def test_objective_needs_a_prompter_for_pem_and_parts_follow_the_stage():
    cfg = make_alpro_config("alpro-debug", num_entities=2)
    with pytest.raises(ValueError, match="alpro.prompter"):
        AlproObjective(cfg, AlproLossConfig(), entities=("dog", "cat"))
    no_pem = AlproObjective(cfg, AlproLossConfig(pem_weight=0))
    assert list(no_pem.loss_parts) == ["vtc", "vtm", "mlm", "pem"]
    prompter = AlproObjective(make_alpro_config("alpro-prompter-debug"), AlproLossConfig())
    assert list(prompter.loss_parts) == ["vtc"]
    assert prompter.clip_shape().frames == 4 and prompter.flops_per_clip() > 0


def test_objective_losses_on_a_debug_batch():
    torch.manual_seed(0)
    cfg = make_alpro_config("alpro-debug")
    objective = AlproObjective(cfg, AlproLossConfig(pem_weight=0))
    model = objective.build_model(fresh=True)
    ids = _debug_batch()["text_ids"]
    batch = {"video": torch.rand(4, 4, 64, 64, 3), "text_ids": ids[:, None]}
    inputs = objective.model_inputs(batch, torch.device("cpu"), torch.float32)
    assert "mlm_labels" in batch and "pem_mask" not in inputs
    out = objective.losses(model(inputs), batch, torch.device("cpu"), rank=0, world_size=1)
    assert set(out) == {"loss", "vtc", "vtm", "mlm", "pem"}
    assert out["pem"].item() == 0.0 and torch.isfinite(out["loss"])
    # An untrained model: VTC near log(B), VTM near CE of a coin, MLM near log(vocab).
    assert out["vtc"].item() == pytest.approx(np.log(4), abs=0.5)
    assert out["mlm"].item() == pytest.approx(np.log(1024), abs=1.5)


def test_train_config_pairs_presets_with_the_objective():
    from training.config_io import from_dict
    from training.pretrain.config import TrainConfig

    base = {"data": {"howto100m": "x"}}
    cfg = from_dict(TrainConfig, {**base, "preset": "alpro-debug", "objective": "alpro"})
    assert cfg.model_config().num_entities == 32
    with pytest.raises(ConfigError, match="objective=alpro"):
        from_dict(TrainConfig, {**base, "preset": "alpro-debug"})
    with pytest.raises(ConfigError, match="alpro.mlm_prob"):
        from_dict(
            TrainConfig,
            {**base, "preset": "alpro-debug", "objective": "alpro", "alpro": {"mlm_prob": 2}},
        )


# ---------------------------------------------------------------- held-out ALPRO metrics
def test_alpro_metrics_run_on_topic_clips_and_stay_in_range():
    from training.eval.alpro import TopicClip, evaluate, half_crops, topic_mask

    torch.manual_seed(0)
    captions = [
        "a dog runs on the beach",
        "a chef chops onions",
        "split screen: a dog on the left, a chef on the right",
    ]
    tok = build_wordpiece(captions * 4, vocab_size=300, max_len=16)
    ids, positions = topic_mask(tok, "a chef chops onions", ["chef", "onions"], 16)
    assert [tok.id_to_token(ids[p]) for p in positions][0] == "chef" and len(positions) >= 2
    words = {"dogs": ["dog", "beach"], "cooking": ["chef", "onions"]}
    clips = [
        TopicClip(torch.rand(4, 64, 64, 3) * 2 - 1, captions[0], "dogs", "dogs",
                  {"dogs": ["dog", "beach"]}),
        TopicClip(torch.rand(4, 64, 64, 3) * 2 - 1, captions[1], "cooking", "cooking",
                  {"cooking": ["chef", "onions"]}),
        TopicClip(torch.rand(4, 64, 64, 3) * 2 - 1, captions[2], "dogs", "cooking",
                  {"dogs": ["dog"], "cooking": ["chef"]}),
    ]  # fmt: skip
    halves = half_crops((4, 4), (0.3, 0.5))
    assert all(left + cols <= 2 for _, left, _, cols in halves["left"])
    assert all(left >= 2 for _, left, _, _ in halves["right"]) and len(halves["left"]) == 3
    # A clip that shares a topic with every other one has no swap partner: only 0 and 1 do.
    model = Alpro(make_alpro_config("alpro-debug", num_entities=4))
    prompter = Prompter(
        Alpro(make_alpro_config("alpro-prompter-debug")),
        prompt_ids(tok, ["dog", "beach", "chef", "onions"], 16),
        threshold=0.0,
    )
    report = evaluate(
        model, prompter, tok, clips[:2], ["dog", "beach", "chef", "onions"], words, 16
    )
    assert report["vtc"]["chance"] == 0.5
    for section in report.values():
        for key, value in section.items():
            if key != "masked_pieces":
                assert 0.0 <= value <= 1.0, (key, value)
