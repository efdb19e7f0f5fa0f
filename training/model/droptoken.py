"""DropToken: keep a random subset of video/audio tokens (or tubes, or frames) per example."""

from __future__ import annotations

import torch
from torch import nn


def num_kept(num_tokens: int, rate: float) -> int:
    """Tokens kept at drop `rate`: round((1 - rate) * N), at least 1 (Python round-half-even)."""
    return max(1, int(round((1.0 - rate) * num_tokens)))


def drop_tokens(
    x: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep a random subset of tokens, drawn independently for every example.

    Args:
        x: (B, N, D) tokens, positions already added (so a kept token remembers where it was).
        rate: fraction of tokens DROPPED, in [0, 1).
        generator: optional RNG for reproducible draws.
    Returns:
        (B, n_keep, D) with n_keep = round((1 - rate) * N), tokens kept in their original order.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"droptoken rate={rate} must be in [0, 1) (it is the dropped fraction)")
    B, N, D = x.shape
    keep = num_kept(N, rate)
    if keep == N:
        return x
    scores = torch.rand(B, N, device=x.device, generator=generator)  # (B, N)
    # Sorting the kept indices keeps the token order; attention does not care, debugging does.
    index = scores.topk(keep, dim=1).indices.sort(dim=1).values  # (B, n_keep)
    return x.gather(1, index.unsqueeze(-1).expand(B, keep, D))  # (B, n_keep, D)


class DropToken(nn.Module):
    """Module form of `drop_tokens`: active only in training mode; eval keeps every token."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"droptoken rate={rate} must be in [0, 1)")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        return drop_tokens(x, self.rate)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def drop_grid(
    x: torch.Tensor, rate: float, unit: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DropToken that keeps the (time, space) grid the factorised ViViT backbones need.

    Args:
        x: (B, t, s, D) tokens, t time slices of s spatial positions, positions added.
        rate: fraction DROPPED, of the spatial positions ("tube") or of the time slices
            ("frame"), drawn independently for every example.
        unit: "tube" drops the same spatial positions in every time slice; "frame" drops
            whole time slices.
    Returns:
        (B, t, s', D) for "tube", (B, t', s, D) for "frame", kept in their original order.
    """
    B, t, s, D = x.shape
    if unit == "tube":
        tubes = x.transpose(1, 2).reshape(B, s, t * D)  # (B, s, t*D): one row per tube
        kept = drop_tokens(tubes, rate, generator)  # (B, s', t*D)
        return kept.reshape(B, -1, t, D).transpose(1, 2)  # (B, t, s', D)
    if unit == "frame":
        frames = x.reshape(B, t, s * D)  # (B, t, s*D): one row per time slice
        return drop_tokens(frames, rate, generator).reshape(B, -1, s, D)  # (B, t', s, D)
    raise ValueError(f"drop_grid unit={unit!r}: choose tube or frame")


class GridDropToken(nn.Module):
    """Module form of `drop_grid`: active only in training mode; eval keeps every token."""

    def __init__(self, rate: float, unit: str):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"droptoken rate={rate} must be in [0, 1)")
        if unit not in ("tube", "frame"):
            raise ValueError(f"grid DropToken unit={unit!r}: choose tube or frame")
        self.rate = rate
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, t, s, D). Returns (B, t', s', D)."""
        if not self.training or self.rate == 0.0:
            return x
        return drop_grid(x, self.rate, self.unit)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, unit={self.unit}"
