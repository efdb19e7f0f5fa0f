"""Per-rank, per-step randomness (`training.distributed.seed_step`): the DropToken draws of the
real model differ across ranks for the same example slot and replay exactly for the same
(seed, rank, step), as after a resume."""

from __future__ import annotations

import torch

from training.distributed import seed_step
from training.model import build_model


def _kept_sets(model, audio: torch.Tensor) -> list[frozenset[int]]:
    """The token indices the audio DropToken kept, per example, from a forward hook."""
    seen = {}

    def hook(_module, inputs, output):
        x = inputs[0]  # (B, N, D) tokens with positions
        match = (output[:, :, None, :] == x[:, None, :, :]).all(-1)  # (B, k, N)
        seen["kept"] = [frozenset(m.nonzero()[:, 1].tolist()) for m in match]

    handle = model.audio_embed.droptoken.register_forward_hook(hook)
    with torch.no_grad():
        model.encode_audio(audio)
    handle.remove()
    return seen["kept"]


def _jaccard(a: list[frozenset[int]], b: list[frozenset[int]]) -> float:
    return sum(len(x & y) / len(x | y) for x, y in zip(a, b)) / len(a)


def test_droptoken_draws_differ_across_ranks_and_replay_per_step():
    torch.manual_seed(0)
    model = build_model("debug", droptoken_rate=0.5).train()
    audio = torch.rand(4, 6400, generator=torch.Generator().manual_seed(1)) * 2 - 1
    draws = {}
    for rank in (0, 1):
        for step in (5, 6):
            seed_step(0, rank, step)
            draws[rank, step] = _kept_sets(model, audio)
    n = model.audio_embed.pos.table.shape[0]
    assert all(len(s) == n // 2 for s in draws[0, 5])  # half the tokens kept
    # Ranks differ at the same step and slot: overlap near that of independent draws (~1/3 at
    # rate 0.5), where one seed on every rank gave identical sets (overlap 1.0).
    cross_rank = _jaccard(draws[0, 5], draws[1, 5])
    assert cross_rank < 0.6
    assert _jaccard(draws[0, 5], draws[0, 6]) < 0.6  # and steps differ
    # A resumed run replays: the same (seed, rank, step) gives the same sets whatever ran before.
    torch.rand(1000)
    seed_step(0, 1, 6)
    assert _kept_sets(model, audio) == draws[1, 6]
    # Micro-batches of one step differ too (grad_accum > 1).
    seed_step(0, 0, 5, micro=1)
    assert _jaccard(_kept_sets(model, audio), draws[0, 5]) < 0.6
