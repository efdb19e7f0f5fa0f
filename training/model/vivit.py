"""ViViT video backbones (Arnab et al., ICCV 2021) beside VATT's joint space-time transformer.

`build_video_backbone(cfg)` returns the video tower's encoder for `cfg.video_backbone`:

    joint                      Model 1: every token attends to every token (VATT's default;
                               the plain `Transformer`, checkpoint keys unchanged).
    factorised_encoder         Model 2: a spatial transformer per time slice (its own frame
                               token, output = that token), then a temporal transformer over
                               the per-slice outputs and the aggregation token.
    factorised_self_attention  Model 3: every block attends over space (within a time slice),
                               then over time (across slices at one spatial position), then MLP.
    factorised_dot_product     Model 4: one attention whose first half of the heads attends over
                               space and second half over time; outputs concatenated, one proj.

Tokens arrive as (B, 1 + N, D): the aggregation token, then N = t * s grid tokens in t-major
order (t time slices of s spatial positions; s may be below h * w after tube DropToken). In
Models 3 and 4 the aggregation token is a global token: its query attends over all tokens,
and it is one extra key/value of every spatial or temporal group, so its output still sums
up the whole clip (the paper's Models 3/4 pool instead; we keep VATT's aggregation token so
`video_features` means the same for every variant). Layer names follow timm (norm1, attn.qkv,
attn.proj, norm2, mlp.fc1, mlp.fc2), so a 2-D ViT checkpoint maps onto them
(training/model/image_init.py); Model 3 adds norm_temporal / attn_temporal.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from training.model.config import ModelConfig, TransformerConfig
from training.model.positions import resize_table
from training.model.transformer import Attention, Block, Transformer, prepend_token

AXES = ("space", "time")


def grid_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: tuple[int, int],
    axis: str,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Self-attention restricted to one axis of the token grid, plus a global first token.

    Args:
        q, k, v: (B, h, 1 + N, hs); index 0 is the aggregation token, then N = t * s tokens
            in t-major order.
        grid: (t, s).
        axis: "space" (groups = time slices, s tokens each) or "time" (groups = spatial
            positions, t tokens each).
    Returns:
        (B, h, 1 + N, hs): grid tokens attend over their group + the aggregation token; the
        aggregation token attends over all 1 + N tokens.
    """
    if axis not in AXES:
        raise ValueError(f"grid_attention axis={axis!r}: choose one of {AXES}")
    B, H, n1, hs = q.shape
    t, s = grid
    if n1 != 1 + t * s:
        raise ValueError(f"{n1 - 1} grid tokens do not fill the (t, s) grid {grid}")

    def groups(z: torch.Tensor) -> torch.Tensor:
        z = z[:, :, 1:].reshape(B, H, t, s, hs)  # (B, h, t, s, hs)
        return z if axis == "space" else z.transpose(2, 3)  # (B, h, G, M, hs)

    qg, kg, vg = groups(q), groups(k), groups(v)
    G, M = qg.shape[2], qg.shape[3]
    # The aggregation token is one more key/value in every group.
    kg = torch.cat([k[:, :, :1, None].expand(B, H, G, 1, hs), kg], dim=3)  # (B, h, G, 1+M, hs)
    vg = torch.cat([v[:, :, :1, None].expand(B, H, G, 1, hs), vg], dim=3)  # (B, h, G, 1+M, hs)
    out = F.scaled_dot_product_attention(
        qg.reshape(B, H * G, M, hs),
        kg.reshape(B, H * G, 1 + M, hs),
        vg.reshape(B, H * G, 1 + M, hs),
        dropout_p=dropout_p,
    ).reshape(B, H, G, M, hs)  # 4-D for SDPA's fused kernels; (B, h*G, M, hs) -> (B, h, G, M, hs)
    if axis == "time":
        out = out.transpose(2, 3)  # (B, h, s, t, hs) -> (B, h, t, s, hs)
    out = out.reshape(B, H, t * s, hs)  # (B, h, N, hs), t-major again
    agg = F.scaled_dot_product_attention(q[:, :, :1], k, v, dropout_p=dropout_p)  # (B, h, 1, hs)
    return torch.cat([agg, out], dim=2)  # (B, h, 1 + N, hs)


class FactorisedAttention(Attention):
    """`Attention` (same qkv/proj) over one grid axis, or split across heads (Model 4)."""

    def __init__(self, cfg: TransformerConfig, pattern: str):
        super().__init__(cfg.d_model, cfg.num_heads, cfg.attn_dropout, cfg.dropout)
        if pattern not in (*AXES, "split"):
            raise ValueError(f"attention pattern={pattern!r}: choose space, time or split")
        self.pattern = pattern

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Args: x (B, 1 + N, D), grid (t, s) with N = t * s. Returns (B, 1 + N, D)."""
        q, k, v = self.split_heads(x)  # 3 x (B, h, 1+N, hs)
        if self.pattern != "split":
            return self.merge_heads(grid_attention(q, k, v, grid, self.pattern, self.dropout_p))
        half = self.num_heads // 2
        space = grid_attention(q[:, :half], k[:, :half], v[:, :half], grid, "space", self.dropout_p)
        time = grid_attention(q[:, half:], k[:, half:], v[:, half:], grid, "time", self.dropout_p)
        return self.merge_heads(torch.cat([space, time], dim=1))  # heads (space | time)

    def extra_repr(self) -> str:
        return f"pattern={self.pattern}"


class FactorisedSelfAttentionBlock(Block):
    """Model 3: z += MSA_space(LN(z)); z += MSA_time(LN(z)); z += MLP(LN(z))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.attn = FactorisedAttention(cfg, "space")
        self.norm_temporal = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn_temporal = FactorisedAttention(cfg, "time")

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        x = x + self.attn_temporal(self.norm_temporal(x), grid)
        return x + self.mlp(self.norm2(x))


class FactorisedDotProductBlock(Block):
    """Model 4: the Block with half the heads attending over space and half over time."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.attn = FactorisedAttention(cfg, "split")

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class FactorisedEncoder(nn.Module):
    """Model 2: spatial transformer per time slice -> temporal transformer over slice outputs."""

    def __init__(self, cfg: TransformerConfig, temporal_layers: int, temporal_positions: int = 0):
        super().__init__()
        # Per-slice summary token: the image model's CLS token when initialised from a ViT.
        self.frame_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        nn.init.trunc_normal_(self.frame_token, std=0.02)  # as VATT's aggregation tokens
        self.spatial = Transformer(cfg)
        self.temporal = Transformer(dataclasses.replace(cfg, num_layers=temporal_layers))
        # scenic's temporal encoder adds a learnable table over the slices (interpolated to
        # other slice counts); 0 = none (ModelConfig.video_temporal_positions).
        self.temporal_pos = None
        if temporal_positions:
            self.temporal_pos = nn.Parameter(torch.zeros(temporal_positions, cfg.d_model))
            nn.init.trunc_normal_(self.temporal_pos, std=0.02)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Args: x (B, 1 + N, D) aggregation token + grid tokens, grid (t, s).

        Returns (B, 1 + t, D): the aggregation token, then one token per time slice.
        """
        B, _, D = x.shape
        t, s = grid
        frames = x[:, 1:].reshape(B * t, s, D)  # (B*t, s, D): one sequence per time slice
        frames = self.spatial(prepend_token(self.frame_token, frames))[:, 0]  # (B*t, D)
        frames = frames.reshape(B, t, D)  # (B, t, D)
        if self.temporal_pos is not None:
            frames = frames + resize_table(self.temporal_pos, t).to(frames.dtype)  # + (t, D)
        return self.temporal(torch.cat([x[:, :1], frames], dim=1))  # (B, 1 + t, D)


def build_video_backbone(cfg: ModelConfig) -> nn.Module:
    """The video tower's encoder for `cfg.video_backbone` (module docstring)."""
    size = cfg.video
    if cfg.video_backbone == "joint":
        return Transformer(size)
    if cfg.video_backbone == "factorised_encoder":
        slices = cfg.tokenizer.video_grid[0] if cfg.video_temporal_positions else 0
        return FactorisedEncoder(size, cfg.video_temporal_layers, slices)
    if cfg.video_backbone == "factorised_self_attention":
        return Transformer(size, block=FactorisedSelfAttentionBlock)
    if cfg.video_backbone == "factorised_dot_product":
        return Transformer(size, block=FactorisedDotProductBlock)
    raise ValueError(f"unknown video_backbone {cfg.video_backbone!r}")
