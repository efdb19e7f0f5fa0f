"""Pre-LN transformer encoder (timm names: norm1, attn.qkv/proj, norm2, mlp.fc1/fc2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.model.config import TransformerConfig


class Attention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention` with an additive bias."""

    def __init__(self, d_model: int, num_heads: int, attn_dropout: float, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_dropout = attn_dropout
        self.proj_drop = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: x (B, N, D). Returns q, k, v, each (B, heads, N, head size)."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B,N,3,h,hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, hs)
        return q, k, v

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, heads, N, head size) attention output. Returns proj(x) (B, N, D)."""
        B, h, N, hs = x.shape
        x = x.transpose(1, 2).reshape(B, N, h * hs)  # (B, N, h, hs) -> (B, N, D)
        return self.proj_drop(self.proj(x))

    @property
    def dropout_p(self) -> float:
        """Attention-probability dropout in effect now (none in eval)."""
        return self.attn_dropout if self.training else 0.0

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """Args: x (B, N, D); attn_bias broadcastable to (B, heads, N, N), float, additive."""
        q, k, v = self.split_heads(x)  # 3 x (B, h, N, hs)
        if attn_bias is not None:
            # SDPA wants a float mask in the query dtype (bf16 under autocast).
            attn_bias = attn_bias.to(q.dtype)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.dropout_p
        )  # (B, h, N, hs)
        return self.merge_heads(x)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """z' = MHA(LN(z)) + z; z = MLP(LN(z')) + z'."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg.d_model, cfg.num_heads, cfg.attn_dropout, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_bias)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of pre-LN blocks and a final LayerNorm; one per tower (or one shared, MA).

    `block` builds each layer from the config: `Block` (joint attention) by default, or a
    factorised ViViT block (training/model/vivit.py) that takes the token grid instead of a bias.
    """

    def __init__(
        self, cfg: TransformerConfig, block: Callable[[TransformerConfig], nn.Module] = Block
    ):
        super().__init__()
        self.grad_checkpointing = cfg.grad_checkpointing
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, *block_args: Any) -> torch.Tensor:
        """Args: x (B, N, D); block_args go to every block: for `Block` an optional additive
        float attn_bias broadcastable to (B, heads, N, N), for ViViT blocks the (t, s) grid.

        Returns (B, N, D).
        """
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_ckpt:
                # use_reentrant=False: works with inputs that need no grad and with autocast.
                x = checkpoint(block, x, *block_args, use_reentrant=False)
            else:
                x = block(x, *block_args)
        return self.norm(x)


def prepend_token(token: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(1, 1, D) learnable token + (B, N, D) tokens -> (B, 1 + N, D)."""
    return torch.cat([token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)


def init_weights(module: nn.Module) -> None:
    """ViT/BERT-style init for `module.apply`: truncated normal(0.02) Linear and Embedding
    weights, zero biases and padding row (both model families use it)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
