"""The VATT module: per-modality embedders, transformer tower(s) and common-space heads.

Knows nothing of distribution, IO or logging: batches in, embeddings out. The video tower's
encoder is VATT's joint transformer or a ViViT variant (training/model/vivit.py).

Output names (`VATT.forward`):
    video_va  (B, d_va)     video in the video-audio space (NCE with audio_va)
    audio_va  (B, d_va)     audio in the video-audio space
    video_vt  (B, d_vt)     video in the video-text space, projected from video_va
    text_vt   (B, K, d_vt)  every caption in the video-text space (MIL-NCE with video_vt)
"""

from __future__ import annotations

import torch
from torch import nn

from training.model.config import ModelConfig, TransformerConfig
from training.model.droptoken import DropToken, GridDropToken
from training.model.heads import VideoHead, build_audio_head, build_text_head
from training.model.positions import (
    AudioPositions,
    RelativePositionBias,
    Spatial2dVideoPositions,
    VideoPositions,
)
from training.model.tokenizers import AudioTokenizer, TextTokenizer, VideoTokenizer
from training.model.transformer import Transformer, init_weights, prepend_token
from training.model.vivit import build_video_backbone

MODALITIES = ("video", "audio", "text")


def position_post(cfg: ModelConfig, tower: TransformerConfig) -> nn.Module:
    """What follows the position sum: nothing ("paper"), or the official code's LayerNorm +
    dropout (`ModelConfig.position_embedding`)."""
    if cfg.position_embedding == "paper":
        return nn.Identity()
    return nn.Sequential(
        nn.LayerNorm(tower.d_model, eps=tower.norm_eps), nn.Dropout(cfg.position_dropout)
    )


class VideoEmbed(nn.Module):
    """Voxel (or frame-patch) tokenizer + positions + DropToken + aggregation token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.video.d_model
        self.tokenizer = VideoTokenizer(
            cfg.tokenizer.video_patch, d, frame_sampling=cfg.video_tokenization == "frame"
        )
        positions = (
            VideoPositions if cfg.video_positions == "factorised" else Spatial2dVideoPositions
        )
        self.pos = positions(cfg.tokenizer.video_grid, d)
        self.pos_post = position_post(cfg, cfg.video)
        self.agg_token = nn.Parameter(torch.zeros(1, 1, d))
        unit = cfg.video_droptoken_unit
        self.droptoken = (
            DropToken(cfg.droptoken_rate)
            if unit == "token"
            else GridDropToken(cfg.droptoken_rate, unit)
        )

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Args: video (B, T, H, W, 3) or (B, 3, T, H, W) in [-1, 1].

        Returns tokens (B, 1 + N', D) and their grid (t', s'), N' = t' * s' kept tokens in
        t-major order. After single-token DropToken the grid is (1, N'): no grid is left.
        The aggregation token is read here, inside `forward`: ZeRO-3 gathers a module's
        partitioned parameters only around its forward call.
        """
        x, (t, h, w) = self.tokenizer(video)  # (B, N, D), N = t*h*w
        x = self.pos_post(self.pos(x, (t, h, w)))
        B, N, D = x.shape
        if isinstance(self.droptoken, GridDropToken):
            x = self.droptoken(x.reshape(B, t, h * w, D))  # (B, t', s', D)
            grid = (x.shape[1], x.shape[2])
            x = x.reshape(B, grid[0] * grid[1], D)  # (B, N', D)
        else:
            x = self.droptoken(x)  # (B, N', D), N' = N in eval
            grid = (t, h * w) if x.shape[1] == N else (1, x.shape[1])
        return prepend_token(self.agg_token, x), grid  # (B, 1 + N', D)


class AudioEmbed(nn.Module):
    """Waveform tokenizer + 1-D positions + DropToken + aggregation token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.audio.d_model
        self.tokenizer = AudioTokenizer(cfg.tokenizer.audio_patch, d)
        self.pos = AudioPositions(cfg.tokenizer.audio_tokens, d)
        self.pos_post = position_post(cfg, cfg.audio)
        self.agg_token = nn.Parameter(torch.zeros(1, 1, d))
        self.droptoken = DropToken(cfg.droptoken_rate)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio (B, S) in [-1, 1]. Returns (B, 1 + N', D)."""
        x = self.droptoken(self.pos_post(self.pos(self.tokenizer(audio))))  # (B, N', D)
        return prepend_token(self.agg_token, x)  # (B, 1 + N', D)


class TextEmbed(nn.Module):
    """Word embedding + aggregation token; positions come as a relative attention bias."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.text.d_model
        self.tokenizer = TextTokenizer(cfg.tokenizer.vocab_size, d)
        self.rel_pos = RelativePositionBias(
            cfg.tokenizer.rel_pos_buckets, cfg.tokenizer.rel_pos_max_distance, cfg.text.num_heads
        )
        self.agg_token = nn.Parameter(torch.zeros(1, 1, d))

    def forward(self, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: text_ids (B, L), 0 = padding.

        Returns tokens (B, 1 + L, D) and the attention bias (B, h, 1 + L, 1 + L).
        """
        x = prepend_token(self.agg_token, self.tokenizer(text_ids))  # (B, 1 + L, D)
        B, N, _ = x.shape
        # Padding keys get -inf; the aggregation token is always a valid key, so no row of the
        # softmax is empty (no NaN), even for all-padding captions (AudioSet examples).
        key_valid = torch.cat(
            [torch.ones(B, 1, dtype=torch.bool, device=x.device), text_ids != 0], dim=1
        )  # (B, 1 + L)
        pad = torch.zeros(B, N, device=x.device, dtype=torch.float32)
        pad = pad.masked_fill(~key_valid, float("-inf"))[:, None, None, :]  # (B, 1, 1, N)
        bias = self.rel_pos(N).float() + pad  # (1, h, N, N) + (B, 1, 1, N) -> (B, h, N, N)
        return x, bias


class VATT(nn.Module):
    """Video-Audio-Text Transformer: modality-specific towers, or one shared tower (VATT-MA)."""

    architecture = "vatt"  # what checkpoints and exports record (training.model.ARCHITECTURES)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.video_embed = VideoEmbed(cfg)
        self.audio_embed = AudioEmbed(cfg)
        self.text_embed = TextEmbed(cfg)
        if cfg.shared_backbone:
            # MA: one transformer; only embedders and heads are per modality.
            self.backbones = nn.ModuleDict({"shared": Transformer(cfg.video)})
        else:
            self.backbones = nn.ModuleDict(
                {
                    "video": build_video_backbone(cfg),
                    "audio": Transformer(cfg.audio),
                    "text": Transformer(cfg.text),
                }
            )
        self.video_head = VideoHead(cfg.video.d_model, cfg.head)
        self.audio_head = build_audio_head(cfg.audio.d_model, cfg.head)
        self.text_head = build_text_head(cfg.text.d_model, cfg.head)
        self.apply(init_weights)
        for embed in (self.video_embed, self.audio_embed, self.text_embed):
            nn.init.trunc_normal_(embed.agg_token, std=0.02)
        for embed, tower in ((self.video_embed, cfg.video), (self.audio_embed, cfg.audio)):
            for table in embed.pos.parameters():
                if cfg.position_embedding == "official":
                    nn.init.normal_(table, std=tower.d_model**-0.5)
                else:
                    nn.init.trunc_normal_(table, std=0.02)

    def backbone(self, modality: str) -> nn.Module:
        """The transformer that encodes `modality` (the same module for all three in MA)."""
        return self.backbones["shared" if self.cfg.shared_backbone else modality]

    # ---- features: aggregation-token outputs of each tower ----
    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """Args: video (B, T, H, W, 3) or (B, 3, T, H, W). Returns (B, D_video)."""
        x, grid = self.video_embed(video)  # (B, 1+N, D), (t, s)
        backbone = self.backbone("video")
        # Factorised ViViT backbones need the (t, s) grid; the joint one sees a set of tokens.
        x = backbone(x) if self.cfg.video_backbone == "joint" else backbone(x, grid)
        return x[:, 0]  # (B, 1+N, D) (Model 2: (B, 1+t, D)) -> (B, D)

    def audio_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio (B, S). Returns (B, D_audio)."""
        return self.backbone("audio")(self.audio_embed(audio))[:, 0]  # (B, 1+N, D) -> (B, D)

    def text_features(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Args: text_ids (B, K, L) or (B, L). Returns (B, K, D_text) or (B, D_text)."""
        lead = text_ids.shape[:-1]  # (B, K) or (B,)
        flat = text_ids.reshape(-1, text_ids.shape[-1])  # (B*K, L)
        x, bias = self.text_embed(flat)  # (B*K, 1+L, D), (B*K, h, 1+L, 1+L)
        x = self.backbone("text")(x, bias)[:, 0]  # (B*K, D)
        return x.reshape(*lead, x.shape[-1])  # (B, K, D)

    def forward_features(self, batch: dict) -> dict[str, torch.Tensor]:
        """Tower outputs for the modalities present in `batch` (keys video, audio, text_ids)."""
        features = {}
        if "video" in batch:
            features["video"] = self.video_features(batch["video"])
        if "audio" in batch:
            features["audio"] = self.audio_features(batch["audio"])
        if "text_ids" in batch:
            text_ids = batch["text_ids"]
            if text_ids.ndim == 2:
                text_ids = text_ids.unsqueeze(1)  # (B, L) -> (B, 1, L): one caption per clip
            features["text"] = self.text_features(text_ids)
            features["text_valid"] = (text_ids != 0).any(-1)  # (B, K): captions with words
        return features

    def forward_head(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Project tower outputs into the common spaces (names in the module docstring)."""
        out = {}
        if "video" in features:
            out["video_va"], out["video_vt"] = self.video_head(features["video"])
        if "audio" in features:
            out["audio_va"] = self.audio_head(features["audio"])
        if "text" in features:
            text = features["text"]  # (B, K, D)
            B, K, D = text.shape
            valid = features.get("text_valid")  # BN statistics over these (text_bn_valid_only)
            valid = None if valid is None else valid.reshape(B * K)
            out["text_vt"] = self.text_head(text.reshape(B * K, D), valid).reshape(B, K, -1)
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Args: batch with video (B,T,H,W,3)|(B,3,T,H,W), audio (B,S), text_ids (B,K,L) int64.

        Masks in the batch (text_mask, audio_mask) are for the loss and ignored here. Returns
        video_va (B,512), audio_va (B,512), video_vt (B,256), text_vt (B,K,256) for the
        modalities present.
        """
        return self.forward_head(self.forward_features(batch))

    # ---- evaluation entry points ----
    def encode_video(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns video_features (B, D), video_va (B, d_va), video_vt (B, d_vt)."""
        features = self.video_features(video)
        va, vt = self.video_head(features)
        return {"video_features": features, "video_va": va, "video_vt": vt}

    def encode_audio(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns audio_features (B, D), audio_va (B, d_va)."""
        features = self.audio_features(audio)
        return {"audio_features": features, "audio_va": self.audio_head(features)}

    def encode_text(self, text_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: text_ids (B, L) or (B, K, L).

        Returns text_features (..., D) and text_vt (..., d_vt).
        """
        features = self.text_features(text_ids)  # (..., D)
        lead = features.shape[:-1]
        vt = self.text_head(features.reshape(-1, features.shape[-1]))  # (prod(lead), d_vt)
        return {"text_features": features, "text_vt": vt.reshape(*lead, -1)}

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Parameters per tower and part: {tower: {tokenizer, backbone, head, total}}.

        tokenizer = tokenizer + positions + aggregation token; backbone = encoder blocks +
        final LayerNorm (reported once, under "shared", for MA); head = projection heads.
        """

        def n(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        counts = {}
        for m in MODALITIES:
            counts[m] = {
                "tokenizer": n(getattr(self, f"{m}_embed")),
                "backbone": 0 if self.cfg.shared_backbone else n(self.backbones[m]),
                "head": n(getattr(self, f"{m}_head")),
            }
        if self.cfg.shared_backbone:
            counts["shared"] = {"tokenizer": 0, "backbone": n(self.backbones["shared"]), "head": 0}
        for part in counts.values():
            part["total"] = part["tokenizer"] + part["backbone"] + part["head"]
        return counts


def with_video_grid(model: VATT, frames: int, height: int, width: int) -> VATT:
    """`model` made to take frames x height x width video as its trained grid: the video
    position tables are interpolated once from the pretraining grid (linear in time,
    (bi)linear in space, exactly what the model does on the fly at another size) and become
    the new learnable tables; every other weight is shared as is. Fine-tuning a 224-pixel
    model at 320 x 320 (spec section 5) starts here. Returns `model` itself when the grid is
    unchanged; ValueError (naming tokenizer.<size>) when a size is not a patch multiple."""
    cfg = model.cfg.replace(tokenizer={"frames": frames, "height": height, "width": width})
    if cfg == model.cfg:
        return model
    state = model.state_dict()
    tables = model.video_embed.pos.resized_tables(cfg.tokenizer.video_grid)
    state |= {f"video_embed.pos.{name}": table for name, table in tables.items()}
    with torch.device("meta"):
        regridded = type(model)(cfg)
    regridded.load_state_dict(state, strict=True, assign=True)
    return regridded.train(model.training)
