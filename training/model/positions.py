"""Positional encodings: factorised 3-D video tables, 1-D audio table, T5 relative text bias."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly interpolate a learnable (n, D) position table to (length, D).

    Used when the input grid differs from the trained one (e.g. 320x320 fine-tuning/eval);
    returns the table itself when no resize is needed, so training pays nothing.
    """
    if table.shape[0] == length:
        return table
    x = table.t().unsqueeze(0)  # (n, D) -> (1, D, n)
    x = F.interpolate(x, size=length, mode="linear", align_corners=False)  # (1, D, length)
    return x.squeeze(0).t()  # (length, D)


def resize_grid_table(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly interpolate a learnable (h, w, D) position table to (height, width, D).

    Returns the table itself when no resize is needed (as `resize_table`).
    """
    if table.shape[:2] == (height, width):
        return table
    x = table.permute(2, 0, 1).unsqueeze(0)  # (h, w, D) -> (1, D, h, w)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.squeeze(0).permute(1, 2, 0)  # (height, width, D)


class VideoPositions(nn.Module):
    """Learnable temporal + vertical + horizontal embeddings, summed per token."""

    def __init__(self, grid: tuple[int, int, int], d_model: int):
        super().__init__()
        t, h, w = grid
        self.temporal = nn.Parameter(torch.zeros(t, d_model))
        self.vertical = nn.Parameter(torch.zeros(h, d_model))
        self.horizontal = nn.Parameter(torch.zeros(w, d_model))

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Args: x (B, N, D) tokens in t-major order, grid (t, h, w) with N = t*h*w."""
        t, h, w = grid
        pos_t = resize_table(self.temporal, t)[:, None, None, :]  # (t, 1, 1, D)
        pos_h = resize_table(self.vertical, h)[None, :, None, :]  # (1, h, 1, D)
        pos_w = resize_table(self.horizontal, w)[None, None, :, :]  # (1, 1, w, D)
        pos = (pos_t + pos_h + pos_w).reshape(t * h * w, -1)  # (t, h, w, D) -> (N, D)
        return x + pos.to(x.dtype)

    def resized_tables(self, grid: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        """The tables interpolated to `grid` (t, h, w), by parameter name: what this module
        computes on the fly for that grid, made the trained grid (fine-tuning at a new size)."""
        t, h, w = grid
        with torch.no_grad():
            return {
                "temporal": resize_table(self.temporal, t).clone(),
                "vertical": resize_table(self.vertical, h).clone(),
                "horizontal": resize_table(self.horizontal, w).clone(),
            }


class Spatial2dVideoPositions(nn.Module):
    """Learnable (h, w) spatial table (ViT's pos_embed layout) + temporal table, summed.

    A 2-D ViT checkpoint fills `spatial` and leaves `temporal` at zero: the image positions
    repeated over time, as ViViT initialises its video models.
    """

    def __init__(self, grid: tuple[int, int, int], d_model: int):
        super().__init__()
        t, h, w = grid
        self.temporal = nn.Parameter(torch.zeros(t, d_model))
        self.spatial = nn.Parameter(torch.zeros(h, w, d_model))

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Args: x (B, N, D) tokens in t-major order, grid (t, h, w) with N = t*h*w."""
        t, h, w = grid
        pos_t = resize_table(self.temporal, t)[:, None, None, :]  # (t, 1, 1, D)
        pos_hw = resize_grid_table(self.spatial, h, w)[None]  # (1, h, w, D)
        pos = (pos_t + pos_hw).reshape(t * h * w, -1)  # (t, h, w, D) -> (N, D)
        return x + pos.to(x.dtype)

    def resized_tables(self, grid: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        """The tables interpolated to `grid` (t, h, w), by parameter name (as VideoPositions)."""
        t, h, w = grid
        with torch.no_grad():
            return {
                "temporal": resize_table(self.temporal, t).clone(),
                "spatial": resize_grid_table(self.spatial, h, w).clone(),
            }


class AudioPositions(nn.Module):
    """Learnable 1-D position table over audio tokens."""

    def __init__(self, num_tokens: int, d_model: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_tokens, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, N, D). Returns x + positions (B, N, D)."""
        return x + resize_table(self.table, x.shape[1]).to(x.dtype)


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5's bidirectional bucketing: half the buckets per direction, exact for small
    distances, log-spaced up to `max_distance`, everything farther shares the last bucket."""
    num_buckets //= 2
    bucket = (relative_position > 0).long() * num_buckets
    distance = relative_position.abs()
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # clamp(min=1) keeps log() finite; those entries take the exact branch anyway.
    large = (
        max_exact
        + (
            torch.log(distance.clamp(min=1).float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).long()
    )
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """Learnable per-head bias over T5 relative-position buckets, added to attention scores.

    Computed once per forward and shared by every layer, as in T5.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> torch.Tensor:
        """Returns the bias (1, heads, L, L) for a sequence of `length` positions."""
        device = self.bias.weight.device
        pos = torch.arange(length, device=device)
        relative = pos[None, :] - pos[:, None]  # (L, L): key position - query position
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        bias = self.bias(buckets)  # (L, L, heads)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, heads, L, L)
