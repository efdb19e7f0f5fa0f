"""Raw-signal tokenizers: video voxels, audio waveform segments and word ids -> d-wide tokens."""

from __future__ import annotations

import torch
from torch import nn


def to_channels_first(video: torch.Tensor) -> torch.Tensor:
    """Return video as (B, C, T, H, W); accepts the loader's (B, T, H, W, C) too.

    Channels-last wins when both dim 1 and dim -1 equal 3 (e.g. T=3, W=3), because that is
    the layout the loader yields.
    """
    if video.ndim != 5:
        raise ValueError(
            f"video must be 5-D (B, T, H, W, 3) or (B, 3, T, H, W); got shape {tuple(video.shape)}"
        )
    if video.shape[-1] == 3:
        return video.permute(0, 4, 1, 2, 3)  # (B, T, H, W, C) -> (B, C, T, H, W)
    if video.shape[1] == 3:
        return video
    raise ValueError(
        f"video shape {tuple(video.shape)} has no RGB axis of size 3 at dim 1 or dim -1"
    )


class VideoTokenizer(nn.Module):
    """Non-overlapping t x h x w x 3 voxels -> linear -> d (a Conv3d with kernel = stride).

    With `frame_sampling` (ViViT's uniform frame sampling) the filter is 1 x h x w and reads
    only the central frame (index t // 2) of every t-frame window: the token grid is the
    tubelet one, and a central-frame-initialised tubelet filter computes the same tokens.
    """

    def __init__(self, patch: tuple[int, int, int], d_model: int, frame_sampling: bool = False):
        super().__init__()
        self.patch = tuple(patch)
        pt, ph, pw = self.patch
        self.frame_offset = pt // 2 if frame_sampling else 0
        kernel = (1, ph, pw) if frame_sampling else self.patch
        self.proj = nn.Conv3d(3, d_model, kernel_size=kernel, stride=self.patch)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Args: video (B, T, H, W, 3) or (B, 3, T, H, W). Returns tokens (B, N, D), grid."""
        x = to_channels_first(video)  # (B, C, T, H, W)
        for axis, size, patch in zip("THW", x.shape[2:], self.patch):
            if size % patch:
                raise ValueError(
                    f"video {axis}={size} is not a multiple of the voxel size {patch}; "
                    "crop or resize the input"
                )
        if self.frame_offset:
            x = x[:, :, self.frame_offset :]  # the stride then picks frames t//2, t//2 + t, ...
        x = self.proj(x.to(self.proj.weight.dtype))  # (B, D, T', H', W')
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)  # (B, D, N) -> (B, N, D), N = T'*H'*W' (t-major)
        return x, grid


class AudioTokenizer(nn.Module):
    """Raw waveform cut into `patch`-sample segments, each linearly projected to d."""

    def __init__(self, patch: int, d_model: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(patch, d_model)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio (B, S) or (B, S, 1). Returns tokens (B, N, D), N = S / patch."""
        if audio.ndim == 3 and audio.shape[-1] == 1:
            audio = audio.squeeze(-1)  # (B, S, 1) -> (B, S)
        if audio.ndim != 2:
            raise ValueError(f"audio must be (B, S); got shape {tuple(audio.shape)}")
        B, S = audio.shape
        if S % self.patch:
            raise ValueError(
                f"audio length S={S} is not a multiple of the audio patch {self.patch}; "
                "crop or pad the waveform"
            )
        x = audio.reshape(B, S // self.patch, self.patch)  # (B, N, patch)
        return self.proj(x.to(self.proj.weight.dtype))  # (B, N, D)


class TextTokenizer(nn.Module):
    """Word ids -> learnable embedding of width d; id 0 is padding (its row stays zero)."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)

    def forward(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Args: text_ids (B, L) int64. Returns tokens (B, L, D)."""
        if text_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"text_ids must be int64 word ids; got {text_ids.dtype}")
        return self.embed(text_ids)  # (B, L, D)
