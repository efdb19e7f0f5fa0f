"""Contrastive losses with negatives from every rank: NCE and MIL-NCE (spec section 3).

For local clip i with positives P_i (its valid captions) and similarities s = cos / tau:

    loss_i = logsumexp({s[i, j, k]} U {s[j, i, k]}) - logsumexp_{k in P_i} s[i, i, k]

over all clips j of the global batch and valid captions k: one denominator holds both
directions (clip i vs every text, every clip vs the texts of i), so the positives appear in it
twice, exactly as in the MIL-NCE reference and the official VATT code (AsymmetricNCE). NCE is
the K = 1 case. Captions with mask 0 are removed everywhere (as positives and negatives); a
clip with no valid caption drops out as a row but stays a negative for the other clips' texts.

Distributed scaling (exact): rank r returns  world_size * sum_{valid local i} loss_i / V
where V is the number of valid rows over ALL ranks, so the mean over ranks of the per-rank
losses equals the single-process loss on the concatenated batch. `gather_with_grad` sums the
gradients of the gathered copies over ranks in backward, so rank r's embeddings get
d(sum_r' loss_r')/dx_r = world_size * d(global loss)/dx_r; DDP/DeepSpeed then average
parameter gradients over ranks (divide by world_size), giving exactly the single-process
gradient. No torch.distributed call is made when world_size == 1. Any objective family
(VATT, ALPRO's VTC) builds on these; rank and world size are arguments, never globals.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

Gather = Callable[[torch.Tensor, int, int], torch.Tensor]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; in backward, sum the gathered gradient over ranks, keep our slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size = rank, world_size
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x)
        parts[rank] = x  # our own slot is the local tensor itself (bit-identical values)
        return torch.cat(parts, dim=0)  # (world_size * B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        # Every rank's loss used our rows as negatives: their gradients must come home.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(ctx.world_size, dim=0)[ctx.rank], None, None


def gather_with_grad(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Concatenate `x` (B, ...) from every rank along dim 0, differentiably.

    The local rows sit at [rank * B, (rank + 1) * B). Unlike open_clip's "put the local tensor
    back" trick alone (which only lets the local slot carry gradient, exact only when every rank
    computes the loss over all rows), the backward here all-reduces the gradient of the whole
    gathered tensor, so each rank also receives the gradient that the other ranks' rows put on
    its embeddings; that is what makes local-rows-only losses exact. All ranks must pass the same
    shape (equal batches per rank). Requires an initialised process group when world_size > 1.
    """
    if world_size == 1:
        return x
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return _GatherWithGrad.apply(x, rank, world_size)


def _as_caption_mask(mask: torch.Tensor | None, B: int, K: int, device) -> torch.Tensor:
    """(B,), (B, 1) or (B, K) mask -> bool (B, K); None = all valid."""
    if mask is None:
        return torch.ones(B, K, dtype=torch.bool, device=device)
    mask = mask.to(device)
    if mask.ndim == 1:
        mask = mask[:, None]  # (B,) -> (B, 1)
    if mask.shape[0] != B or mask.shape[1] not in (1, K):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match (B={B}, K={K}) or (B,)")
    return (mask > 0).expand(B, K)


def mil_nce(
    video: torch.Tensor,
    text: torch.Tensor,
    tau: float,
    text_mask: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather = gather_with_grad,
) -> torch.Tensor:
    """MIL-NCE between clips and their K positive captions, negatives from all ranks.

    Args:
        video: (B, D) local clip embeddings (not yet normalised).
        text: (B, K, D) local caption embeddings, K positives per clip.
        tau: temperature; similarities are cos / tau.
        text_mask: (B,) or (B, K) floats/bools; 0 = no text (row dropped, texts not negatives).
        rank, world_size: this process' place in the group (never read from globals).
        gather: differentiable all-gather (B, ...) -> (world_size * B, ...).
    Returns:
        Scalar loss (see the module docstring for the cross-rank scaling); exactly 0 with a
        gradient graph when no row has valid text.
    """
    if video.ndim != 2 or text.ndim != 3 or text.shape[0] != video.shape[0]:
        raise ValueError(
            "expected video (B, D) and text (B, K, D); "
            f"got {tuple(video.shape)}, {tuple(text.shape)}"
        )
    B, K, _ = text.shape
    caption_mask = _as_caption_mask(text_mask, B, K, video.device)  # (B, K) bool
    # fp32 similarities: bf16 logits / 0.07 lose the small differences the loss is about.
    with torch.autocast(device_type=video.device.type, enabled=False):
        video = F.normalize(video.float(), dim=-1)  # (B, D)
        text = F.normalize(text.float(), dim=-1)  # (B, K, D)
        video_all = gather(video, rank, world_size)  # (Bg, D)
        text_all = gather(text, rank, world_size)  # (Bg, K, D)
        mask_all = gather(caption_mask.float(), rank, world_size) > 0  # (Bg, K)

        neg_inf = torch.tensor(float("-inf"), device=video.device)
        # s[i, j, k]: local clip i vs caption k of clip j, for all j.
        clip_to_text = torch.einsum("bd,ckd->bck", video, text_all) / tau  # (B, Bg, K)
        clip_to_text = torch.where(mask_all[None], clip_to_text, neg_inf)
        # s[j, i, k]: clip j (all) vs caption k of local clip i.
        text_to_clip = torch.einsum("cd,bkd->bck", video_all, text) / tau  # (B, Bg, K)
        text_to_clip = torch.where(caption_mask[:, None, :], text_to_clip, neg_inf)
        positives = torch.einsum("bd,bkd->bk", video, text) / tau  # (B, K): s[i, i, k]
        positives = torch.where(caption_mask, positives, neg_inf)

        logits = torch.cat([clip_to_text.flatten(1), text_to_clip.flatten(1)], dim=1)  # (B, 2BgK)
        row_valid = caption_mask.any(dim=1)  # (B,)
        # Rows without text would be logsumexp(-inf...) = NaN (also in backward): feed them
        # zeros instead and mask their loss out; valid rows always hold their own positives.
        logits = torch.where(row_valid[:, None], logits, 0.0)
        positives = torch.where(row_valid[:, None], positives, 0.0)
        per_row = torch.logsumexp(logits, dim=1) - torch.logsumexp(positives, dim=1)  # (B,)
        per_row = torch.where(row_valid, per_row, 0.0)

        num_valid = mask_all.any(dim=1).sum().clamp(min=1).float()  # valid rows on all ranks
        return world_size * per_row.sum() / num_valid


def nce(
    video: torch.Tensor,
    audio: torch.Tensor,
    tau: float,
    audio_mask: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather = gather_with_grad,
) -> torch.Tensor:
    """Symmetric NCE between clips and their audio: `mil_nce` with one positive (K = 1).

    Args: video (B, D), audio (B, D), tau, optional audio_mask (B,) (0 = no audio), rank,
    world_size, gather as in `mil_nce`. Returns a scalar.
    """
    if audio.ndim != 2:
        raise ValueError(f"expected audio (B, D); got {tuple(audio.shape)}")
    return mil_nce(
        video, audio.unsqueeze(1), tau, audio_mask, rank=rank, world_size=world_size, gather=gather
    )  # audio (B, D) -> (B, 1, D)


__all__ = ["Gather", "gather_with_grad", "mil_nce", "nce"]
