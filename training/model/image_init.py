"""Initialise the video tower from a 2-D ViT image checkpoint (timm layout), as ViViT does.

Read keys (timm `vision_transformer.py` names): `patch_embed.proj.weight|bias` (D, 3, h, w),
`cls_token` (1, 1, D), `pos_embed` (1, [1 +] gh*gw, D), `blocks.N.{norm1, attn.qkv, attn.proj,
norm2, mlp.fc1, mlp.fc2}.{weight, bias}` and `norm.{weight, bias}`. Anything else outside the
blocks (classifier `head.*`, `fc_norm`, ...) is ignored and listed in the report; extra keys
*inside* a block (layer scale, q/k norm) are an error, since dropping them changes the model.

Mapping (ViViT section 3.4):
- tubelet filter from the 2-D filter: "central_frame" puts it at time index t // 2 and zeros
  elsewhere (so at init the tubelet model equals uniform frame sampling of the central frames);
  "inflate" tiles it over the t frames divided by t (equal on a static video);
- positions: the image's (gh, gw) table, resized bilinearly to the video grid, repeated over
  time (temporal table zero); needs `video_positions="spatial_2d"`;
- aggregation token = cls_token + the cls position (our token has no position of its own);
- blocks and final norm: one to one for Models 1 and 4 (same parameters); Model 3's spatial
  attention gets the image attention, its temporal attention copies the qkv and starts with a
  zero output projection (the block starts as the image block); Model 2's spatial encoder and
  its frame token get the image model, its temporal encoder keeps its random init.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from training.model.positions import resize_grid_table
from training.model.vatt import VATT

BLOCK_PARAMS = tuple(
    f"{layer}.{kind}"
    for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for kind in ("weight", "bias")
)
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


class ImageInitError(ValueError):
    """The image checkpoint cannot initialise this video tower (message names key and why)."""


def load_image_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ViT state dict from a local `.safetensors` file or a torch checkpoint.

    A torch file may wrap the state dict under "model" or "state_dict" (common trainers do).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInitError(f"{path}: no such file (model.video_init)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's fault
        raise ImageInitError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {e})"
        ) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImageInitError(f"{path}: expected a dict of tensors (a ViT state dict)")
    return state


def _video_prefix(model: VATT) -> str:
    if model.cfg.shared_backbone:
        raise ImageInitError(
            "model.video_init with shared_backbone=True would overwrite the transformer that "
            "audio and text share; use a modality-specific preset"
        )
    return (
        "backbones.video.spatial."
        if model.cfg.video_backbone == "factorised_encoder"
        else ("backbones.video.")
    )


class _Source:
    """The image state dict being read: `take` marks a key used, errors name the file."""

    def __init__(self, state: dict[str, torch.Tensor], name: str):
        self.state, self.name, self.used = state, name, set()

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ImageInitError(f"{self.name}: missing {key!r} (expected a timm-layout ViT)")
        self.used.add(key)
        return self.state[key]


Targets = dict[str, tuple[str, torch.Tensor]]  # our parameter name -> (image key, value)


def _patch_targets(model: VATT, src: _Source, mode: str) -> Targets:
    """Patch embedding: (D, 3, h, w) -> (D, 3, t, h, w), at the central frame or tiled."""
    proj = model.video_embed.tokenizer.proj
    D, C, pt, ph, pw = proj.weight.shape
    w2 = src.take("patch_embed.proj.weight")
    if tuple(w2.shape) != (D, C, ph, pw):
        raise ImageInitError(
            f"{src.name}: patch_embed.proj.weight has shape {tuple(w2.shape)} but the video "
            f"tokenizer needs {(D, C, ph, pw)} (d_model x 3 x patch h x w); match "
            "video.d_model and tokenizer.video_patch to the image model"
        )
    if mode == "central_frame":
        w3 = torch.zeros(D, C, pt, ph, pw, dtype=w2.dtype)
        w3[:, :, pt // 2] = w2
    else:
        w3 = w2[:, :, None].expand(D, C, pt, ph, pw) / pt  # tiled over time, same response
    targets = {"video_embed.tokenizer.proj.weight": ("patch_embed.proj.weight", w3)}
    if "patch_embed.proj.bias" in src.state:
        bias = src.take("patch_embed.proj.bias")
        targets["video_embed.tokenizer.proj.bias"] = ("patch_embed.proj.bias", bias)
    return targets


def _position_targets(model: VATT, src: _Source) -> Targets:
    """Positions: the image table repeated over time; the cls position folds into the token."""
    cfg = model.cfg
    D = cfg.video.d_model
    pos = src.take("pos_embed")
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != D:
        raise ImageInitError(
            f"{src.name}: pos_embed has shape {tuple(pos.shape)}; expected (1, [1 +] h*w, {D})"
        )
    n = pos.shape[1]
    num_prefix = next((p for p in (1, 0) if n > p and math.isqrt(n - p) ** 2 == n - p), None)
    if num_prefix is None:
        raise ImageInitError(
            f"{src.name}: pos_embed has {n} positions, neither h*w nor 1 + h*w of a square grid"
        )
    side = math.isqrt(n - num_prefix)
    t, h, w = cfg.tokenizer.video_grid
    spatial = resize_grid_table(pos[0, num_prefix:].reshape(side, side, D).float(), h, w)
    cls = src.take("cls_token")
    if tuple(cls.shape) != (1, 1, D):
        raise ImageInitError(
            f"{src.name}: cls_token has shape {tuple(cls.shape)}, need (1, 1, {D})"
        )
    agg = cls + (pos[:, :1] if num_prefix else 0)  # (1, 1, D)
    targets = {
        "video_embed.pos.spatial": ("pos_embed", spatial),
        "video_embed.pos.temporal": ("pos_embed", torch.zeros(t, D)),
        "video_embed.agg_token": ("cls_token", agg),
    }
    if cfg.video_backbone == "factorised_encoder":
        targets["backbones.video.frame_token"] = ("cls_token", agg)
    return targets


def _block_targets(model: VATT, src: _Source, prefix: str) -> Targets:
    """Encoder blocks and the final norm (Model 3's temporal attention from the spatial one,
    with a zero output projection)."""
    cfg, state = model.cfg, src.state
    depth = 1 + max((int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))), default=-1)
    if depth != cfg.video.num_layers:
        raise ImageInitError(
            f"{src.name}: the image model has {depth} blocks but the video "
            f"{'spatial encoder' if prefix.endswith('spatial.') else 'tower'} has "
            f"{cfg.video.num_layers}; set video.num_layers={depth}"
        )
    targets: Targets = {}
    for i in range(depth):
        for name in BLOCK_PARAMS:
            targets[f"{prefix}blocks.{i}.{name}"] = (
                f"blocks.{i}.{name}",
                src.take(f"blocks.{i}.{name}"),
            )
        if cfg.video_backbone != "factorised_self_attention":
            continue
        for kind in ("weight", "bias"):
            qkv, norm = f"blocks.{i}.attn.qkv.{kind}", f"blocks.{i}.norm1.{kind}"
            out = f"blocks.{i}.attn.proj.{kind}"
            targets[f"{prefix}blocks.{i}.attn_temporal.qkv.{kind}"] = (qkv, state[qkv])
            targets[f"{prefix}blocks.{i}.norm_temporal.{kind}"] = (norm, state[norm])
            # Zero output: the temporal attention adds nothing until it is trained.
            zero = torch.zeros_like(state[out])
            targets[f"{prefix}blocks.{i}.attn_temporal.proj.{kind}"] = (out, zero)
    for kind in ("weight", "bias"):
        targets[f"{prefix}norm.{kind}"] = (f"norm.{kind}", src.take(f"norm.{kind}"))
    extra_in_blocks = sorted(k for k in state if _BLOCK_KEY.match(k) and k not in src.used)
    if extra_in_blocks:
        raise ImageInitError(
            f"{src.name}: {extra_in_blocks[0]} (and {len(extra_in_blocks) - 1} more) has no "
            "place in our blocks (layer scale / q-k norm ViTs are not supported)"
        )
    return targets


def init_video_from_image(
    model: VATT,
    state: dict[str, torch.Tensor],
    mode: str = "central_frame",
    source: str = "image checkpoint",
) -> dict:
    """Copy a 2-D ViT's weights into `model`'s video tower (module docstring), in place.

    Args:
        model: a VATT whose config has `video_positions="spatial_2d"`.
        state: timm-layout ViT state dict (`load_image_checkpoint`).
        mode: "central_frame" or "inflate" (tubelet filter init; same for frame sampling).
        source: the file name, for error messages.
    Returns:
        {"loaded": video parameters written, "kept": video-tower parameters left at their
        init, "ignored": image keys not used}.
    Raises:
        ImageInitError: missing key, shape mismatch (width, patch size, MLP width, depth)
        or a layout our blocks cannot hold; the message names the key and what to change.
    """
    if mode not in ("central_frame", "inflate"):
        raise ImageInitError(f"video_init_mode={mode!r}: choose central_frame or inflate")
    if model.cfg.video_positions != "spatial_2d":
        raise ImageInitError(
            f"{source}: pos_embed is a 2-D (h, w) table, which video_positions=factorised "
            "(t + h + w tables) cannot hold; set model.video_positions=spatial_2d"
        )
    src = _Source(state, source)
    targets = _patch_targets(model, src, mode)
    targets |= _position_targets(model, src)
    targets |= _block_targets(model, src, _video_prefix(model))
    params = dict(model.named_parameters())
    for name, (key, value) in targets.items():  # check everything before writing anything
        if tuple(value.shape) != tuple(params[name].shape):
            raise ImageInitError(
                f"{source}: {key} has shape {tuple(value.shape)} but {name} needs "
                f"{tuple(params[name].shape)}; match the video tower's size to the image model"
            )
    with torch.no_grad():
        for name, (_, value) in targets.items():
            params[name].copy_(value.to(params[name].dtype))
    tower = [n for n in params if n.startswith(("video_embed.", "backbones.video."))]
    return {
        "loaded": sorted(targets),
        "kept": sorted(n for n in tower if n not in targets),
        "ignored": sorted(k for k in state if k not in src.used),
    }
