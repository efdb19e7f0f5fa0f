"""The ALPRO model (Li et al., CVPR 2022) built from this project's parts: a TimeSformer-like
video encoder, a BERT-base-shaped text encoder and multimodal (fusion) encoder, and the heads of
its four objectives (VTC, VTM, MLM, PEM).

Knows nothing of distribution, IO or logging: tensors in, tensors out. Shapes:

    video (B, T, H, W, 3) -> patch tokens on a (T, h, w) grid, h = H / p, w = W / p
      -> `AlproVideoEncoder`: divided space-time blocks (time, then space; TimeSformer's
         order, with its temporal_fc) over [CLS] + T*h*w tokens
      -> video_embeds (B, 1 + h*w, D): the [CLS] output, then every patch averaged over time
    text_ids (B, L), 0 = padding, [CLS] first -> `AlproTextEncoder` (word + position + type
      embeddings, LayerNorm, `text.num_layers` blocks: BERT layers 0-5) -> (B, L, D)
    fusion: `fusion_layers` blocks (BERT layers 6-11) over [text ; video] -> (B, L + 1 + h*w, D)

Heads: vision_proj / text_proj (D -> proj_dim, VTC), itm_head (D -> 2 on the fusion [CLS],
VTM), mlm_head (dense-GELU-LayerNorm-decoder tied to the word embedding, MLM), pem_head
(D -> 2D -> num_entities on the fusion outputs pooled over a crop's patches, PEM) and the
learnable temperature `temp` (clamped to [temp_min, temp_max] where it is used).

A prompter (ALPRO's first stage) is the same model with `fusion_layers=0` and
`num_entities=0`: only the two encoders and the VTC projections.

The blocks are the project's pre-LN `Block` (training/model/transformer.py): a pre-LN block
holds exactly the parameters of a post-LN BERT layer (q, k, v, output dense, two LayerNorms,
intermediate and output dense), so the text and fusion stacks match BERT-base's parameter
count block for block; each stack adds one final LayerNorm (the pre-LN form needs it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.config_io import require_at_least
from training.model.config import TransformerConfig
from training.model.positions import Spatial2dVideoPositions
from training.model.tokenizers import VideoTokenizer
from training.model.transformer import Transformer, init_weights, prepend_token
from training.model.vivit import FactorisedSelfAttentionBlock

# The released ALPRO's trainable parameters in pre-training (TimeSformer-B/16 at 4 frames,
# BERT-base with its MLM head, projections, VTM head, temperature and a 1000-entity PEM head),
# counted from its code; the frozen prompter is not trained and not counted.
ALPRO_RELEASE_PARAMS_M = 233.88


@dataclass(frozen=True)
class AlproConfig:
    """The whole ALPRO model (or prompter); a checkpoint stores `dataclasses.asdict(cfg)`."""

    name: str = "custom"
    # 4 frames at 224x224 in 16x16 patches: ALPRO's pre-training input (TimeSformer-B/16).
    frames: int = 4
    height: int = 224
    width: int = 224
    patch: int = 16
    # ViT-B: the TimeSformer video encoder.
    video: TransformerConfig = field(default_factory=lambda: TransformerConfig(12, 768, 3072, 12))
    # BERT-base layers 0-5 encode text; `fusion_layers` more of the same size are layers 6-11.
    text: TransformerConfig = field(default_factory=lambda: TransformerConfig(6, 768, 3072, 12))
    fusion_layers: int = 6  # 0 = a prompter: encoders + VTC projections only
    # BERT's vocabulary size and position table; our WordPiece vocabulary is trained on the
    # corpus captions with at most this many entries (unused rows stay untrained).
    vocab_size: int = 30522
    max_text_len: int = 512
    # 256-d contrastive space, temperature 0.07 clamped to [0.001, 0.5] (the release's).
    proj_dim: int = 256
    temp_init: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    # PEM classes: the M most frequent entities (1000 in the paper); 0 = no PEM head.
    num_entities: int = 1000

    def __post_init__(self) -> None:
        sizes = ("frames", "height", "width", "patch", "vocab_size", "max_text_len", "proj_dim")
        require_at_least(self, "model", sizes, 1)
        for key in ("height", "width"):
            if getattr(self, key) % self.patch:
                raise ValueError(
                    f"model.{key}={getattr(self, key)} must be a multiple of model.patch="
                    f"{self.patch}"
                )
        if self.fusion_layers < 0 or self.num_entities < 0:
            raise ValueError("model.fusion_layers and model.num_entities must be >= 0")
        if self.num_entities and not self.fusion_layers:
            raise ValueError(
                "model.num_entities > 0 needs model.fusion_layers > 0 (PEM reads the fusion "
                "encoder's outputs); set num_entities=0 for a prompter"
            )
        if self.video.d_model != self.text.d_model:
            raise ValueError(
                f"model.video.d_model={self.video.d_model} must equal model.text.d_model="
                f"{self.text.d_model}: the fusion encoder concatenates their tokens"
            )
        if not 0 < self.temp_min <= self.temp_init <= self.temp_max:
            raise ValueError(
                f"model.temp_init={self.temp_init} must lie in [temp_min={self.temp_min}, "
                f"temp_max={self.temp_max}] with temp_min > 0"
            )

    @property
    def grid(self) -> tuple[int, int, int]:
        """The video token grid (T, h, w)."""
        return self.frames, self.height // self.patch, self.width // self.patch

    @property
    def tokenizer(self) -> AlproInputShape:
        """Frames, frame size and vocabulary under the names the loader and the held-out
        evaluation read (`ClipShape.from_model`, `HeldoutRetrieval.for_run`)."""
        return AlproInputShape(self.frames, self.height, self.width, self.vocab_size)

    @property
    def is_prompter(self) -> bool:
        return self.fusion_layers == 0

    @classmethod
    def from_dict(cls, data: dict) -> AlproConfig:
        """Rebuild from `dataclasses.asdict(cfg)` (as stored in checkpoints and exports)."""
        data = dict(data)
        return cls(
            video=TransformerConfig(**data.pop("video", {})),
            text=TransformerConfig(**data.pop("text", {})),
            **data,
        )

    def replace(self, **overrides) -> AlproConfig:
        """`dataclasses.replace`, where a dict value updates `video` or `text` field by field."""
        names = {f.name for f in dataclasses.fields(self)}
        updates = {}
        for key, value in overrides.items():
            if key not in names:
                raise ValueError(f"unknown ALPRO model field {key!r}; choose from {sorted(names)}")
            current = getattr(self, key)
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            updates[key] = value
        return dataclasses.replace(self, **updates)


@dataclass(frozen=True)
class AlproInputShape:
    """The input grid in the names the shared data and evaluation code reads from a model
    config's `tokenizer` section (VATT's `TokenizerConfig`)."""

    frames: int
    height: int
    width: int
    vocab_size: int
    # ALPRO reads no audio; the loader still cuts a waveform of this length (3.2 s of 48 kHz
    # audio pools to it by 24), which the objective ignores.
    audio_samples: int = 6400


# ---- Presets -------------------------------------------------------------------------------

# CPU debug size: 4 frames of 64x64 in 16x16 patches (a 4x4 grid), width 64, 2+2+2 layers.
_DEBUG_SIZE = TransformerConfig(num_layers=2, d_model=64, d_ff=256, num_heads=4)
_DEBUG = dict(
    frames=4,
    height=64,
    width=64,
    patch=16,
    video=_DEBUG_SIZE,
    text=_DEBUG_SIZE,
    vocab_size=1024,
    max_text_len=64,
    proj_dim=32,
)
ALPRO_PRESETS: dict[str, AlproConfig] = {
    "alpro-base": AlproConfig(name="alpro-base"),
    "alpro-prompter-base": AlproConfig(name="alpro-prompter-base", fusion_layers=0, num_entities=0),
    # 32 entities: the sample corpus has 8 topics of 9 words each, plus layout words.
    "alpro-debug": AlproConfig(name="alpro-debug", fusion_layers=2, num_entities=32, **_DEBUG),
    "alpro-prompter-debug": AlproConfig(
        name="alpro-prompter-debug", fusion_layers=0, num_entities=0, **_DEBUG
    ),
}


def make_alpro_config(preset: str, **overrides) -> AlproConfig:
    """The preset's AlproConfig with `overrides` applied (see `AlproConfig.replace`)."""
    key = preset.strip().lower()
    if key not in ALPRO_PRESETS:
        raise ValueError(
            f"unknown ALPRO preset {preset!r} (choose from {', '.join(ALPRO_PRESETS)})"
        )
    return ALPRO_PRESETS[key].replace(**overrides)


# ---- Encoders ------------------------------------------------------------------------------


class TimeSformerBlock(FactorisedSelfAttentionBlock):
    """Divided space-time attention in TimeSformer's order: z += fc_t(MSA_time(LN(z)));
    z += MSA_space(LN(z)); z += MLP(LN(z)). `temporal_fc` starts at zero (as TimeSformer's),
    so a fresh block is an image block plus an identity temporal path."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg)
        self.temporal_fc = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.temporal_fc(self.attn_temporal(self.norm_temporal(x), grid))
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class AlproVideoEncoder(nn.Module):
    """Frame patches + ViT-style positions + [CLS] -> divided space-time blocks."""

    def __init__(self, cfg: AlproConfig):
        super().__init__()
        d = cfg.video.d_model
        self.tokenizer = VideoTokenizer((1, cfg.patch, cfg.patch), d)  # one frame per token
        self.pos = Spatial2dVideoPositions(cfg.grid, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = Transformer(cfg.video, block=TimeSformerBlock)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Args: video (B, T, H, W, 3) or (B, 3, T, H, W) in [-1, 1].

        Returns video_embeds (B, 1 + h*w, D): [CLS], then each patch averaged over time.
        """
        x, (t, h, w) = self.tokenizer(video)  # (B, t*h*w, D)
        x = self.pos(x, (t, h, w))
        x = self.blocks(prepend_token(self.cls_token, x), (t, h * w))  # (B, 1 + t*h*w, D)
        B, _, D = x.shape
        patches = x[:, 1:].reshape(B, t, h * w, D).mean(dim=1)  # (B, h*w, D)
        return torch.cat([x[:, :1], patches], dim=1)  # (B, 1 + h*w, D)


def padding_bias(valid: torch.Tensor) -> torch.Tensor:
    """(B, N) bool, True = a real token -> additive attention bias (B, 1, 1, N)."""
    bias = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    return bias.masked_fill(~valid, float("-inf"))[:, None, None, :]


class AlproTextEncoder(nn.Module):
    """BERT-style embeddings (word + learned position + token type, LayerNorm) + blocks."""

    def __init__(self, cfg: AlproConfig):
        super().__init__()
        d = cfg.text.d_model
        self.word_embed = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        self.pos_embed = nn.Embedding(cfg.max_text_len, d)
        # BERT's segment table; every token is segment 0 here (kept for BERT's layout).
        self.type_embed = nn.Embedding(2, d)
        self.norm = nn.LayerNorm(d, eps=cfg.text.norm_eps)
        self.blocks = Transformer(cfg.text)

    def forward(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Args: text_ids (B, L) int64, 0 = padding. Returns (B, L, D)."""
        B, L = text_ids.shape
        if L > self.pos_embed.num_embeddings:
            raise ValueError(f"text length {L} exceeds model.max_text_len")
        positions = torch.arange(L, device=text_ids.device)
        x = self.word_embed(text_ids) + self.pos_embed(positions)[None] + self.type_embed.weight[0]
        return self.blocks(self.norm(x), padding_bias(text_ids != 0))  # (B, L, D)


class MlmHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> decoder (tied to words) + bias."""

    def __init__(self, d_model: int, word_embed: nn.Embedding, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.decoder = nn.Linear(d_model, word_embed.num_embeddings)
        self.decoder.weight = word_embed.weight  # tied, as BERT's
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, L, D). Returns logits (B, L, vocab)."""
        return self.decoder(self.norm(self.act(self.dense(x))))


# ---- The model -----------------------------------------------------------------------------


def crop_pool(tokens: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the patch tokens inside a crop.

    Args: tokens (B, h*w, D) patch outputs; patch_mask (B, h, w) bool, True inside the crop.
    Returns (B, D).
    """
    m = patch_mask.flatten(1).to(tokens.dtype)[..., None]  # (B, h*w, 1)
    return (tokens * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class Alpro(nn.Module):
    """ALPRO (or its prompter when `cfg.fusion_layers == 0`); see the module docstring."""

    architecture = "alpro"  # what checkpoints and exports record (training.model.ARCHITECTURES)

    def __init__(self, cfg: AlproConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.text.d_model
        self.video_encoder = AlproVideoEncoder(cfg)
        self.text_encoder = AlproTextEncoder(cfg)
        self.vision_proj = nn.Linear(d, cfg.proj_dim)
        self.text_proj = nn.Linear(d, cfg.proj_dim)
        # Shape (1,), not a 0-d scalar: DeepSpeed's broadcast views parameters as bytes.
        self.temp = nn.Parameter(torch.full((1,), float(cfg.temp_init)))
        if cfg.fusion_layers:
            fusion = dataclasses.replace(cfg.text, num_layers=cfg.fusion_layers)
            self.fusion = Transformer(fusion)
            self.itm_head = nn.Linear(d, 2)
            self.mlm_head = MlmHead(d, self.text_encoder.word_embed, cfg.text.norm_eps)
        if cfg.num_entities:
            self.pem_head = nn.Sequential(
                nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, cfg.num_entities)
            )
        self.apply(init_weights)
        for p in (self.video_encoder.cls_token, *self.video_encoder.pos.parameters()):
            nn.init.trunc_normal_(p, std=0.02)
        for block in self.video_encoder.blocks.blocks:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)
        if cfg.fusion_layers:
            nn.init.zeros_(self.mlm_head.decoder.bias)

    # ---- encoders and evaluation entry points (the names VATT's evaluation code reads) ----
    def temperature(self) -> torch.Tensor:
        """The learnable temperature, clamped (a scalar with a gradient inside the range)."""
        return self.temp.clamp(self.cfg.temp_min, self.cfg.temp_max)[0]

    def encode_video(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns video_embeds (B, 1+h*w, D), video_features (B, D) = [CLS], and video_vt
        (B, proj_dim), the VTC embedding (unnormalised; retrieval normalises)."""
        embeds = self.video_encoder(video)
        return {
            "video_embeds": embeds,
            "video_features": embeds[:, 0],
            "video_vt": self.vision_proj(embeds[:, 0]),
        }

    def encode_text(self, text_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: text_ids (B, L) or (B, K, L). Returns text_embeds (..., L, D), text_features
        (..., D) = [CLS], text_vt (..., proj_dim)."""
        lead = text_ids.shape[:-1]
        flat = text_ids.reshape(-1, text_ids.shape[-1])  # (B*K, L)
        embeds = self.text_encoder(flat)  # (B*K, L, D)
        cls = embeds[:, 0]
        return {
            "text_embeds": embeds.reshape(*lead, *embeds.shape[1:]),
            "text_features": cls.reshape(*lead, -1),
            "text_vt": self.text_proj(cls).reshape(*lead, -1),
        }

    def fuse(
        self, text_embeds: torch.Tensor, text_ids: torch.Tensor, video_embeds: torch.Tensor
    ) -> torch.Tensor:
        """The multimodal encoder over [text ; video].

        Args: text_embeds (B, L, D), text_ids (B, L) (0 = padding keys), video_embeds
        (B, 1 + h*w, D). Returns (B, L + 1 + h*w, D).
        """
        if self.cfg.is_prompter:
            raise ValueError("a prompter (fusion_layers=0) has no multimodal encoder")
        valid = torch.cat(
            [text_ids != 0, torch.ones(video_embeds.shape[:2], dtype=torch.bool,
                                       device=text_ids.device)], dim=1,
        )  # fmt: skip  # (B, L + 1 + h*w)
        x = torch.cat([text_embeds, video_embeds.to(text_embeds.dtype)], dim=1)
        return self.fusion(x, padding_bias(valid))

    def match_logits(self, video: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """VTM logits (B, 2) of pairs (video[i], text_ids[i]); softmax[:, 1] = P(match)."""
        v = self.video_encoder(video)
        t = self.text_encoder(text_ids)
        return self.itm_head(self.fuse(t, text_ids, v)[:, 0])

    # ---- training forward --------------------------------------------------------------
    def forward(self, inputs: dict) -> dict[str, torch.Tensor]:
        """Args (dict): video (B, T, H, W, 3); text_ids (B, L) with [CLS] first; optional
        mlm_ids (B, L) (masked copy of text_ids, for MLM), pem_mask (B, h, w) bool (the
        crop's patches, for PEM) and vtm_duplicate_cos (float, `hard_negatives`).

        Returns video_vt, text_vt (B, proj_dim), temp (scalar); with a fusion encoder also
        vtm_logits (3B, 2) for [positives; (text, hard negative video); (hard negative text,
        video)] and the sampled vtm_neg_video / vtm_neg_text indices (B,); mlm_logits
        (B, L, vocab) when mlm_ids is given; pem_logits (B, M) when pem_mask is given.
        """
        video, text_ids = inputs["video"], inputs["text_ids"]
        v = self.video_encoder(video)  # (B, 1+s, D)
        t = self.text_encoder(text_ids)  # (B, L, D)
        out = {
            "video_vt": self.vision_proj(v[:, 0]),
            "text_vt": self.text_proj(t[:, 0]),
            "temp": self.temperature(),
        }
        if self.cfg.is_prompter:
            return out
        B, L = text_ids.shape
        if B < 2:
            raise ValueError("VTM needs at least 2 clips per micro-batch (hard negatives)")
        neg_video, neg_text = hard_negatives(
            out["video_vt"], out["text_vt"], out["temp"], inputs.get("vtm_duplicate_cos", 1.0)
        )
        fused_pos = self.fuse(t, text_ids, v)  # (B, L+1+s, D)
        fused_neg = self.fuse(
            torch.cat([t, t[neg_text]]),
            torch.cat([text_ids, text_ids[neg_text]]),
            torch.cat([v[neg_video], v]),
        )  # (2B, L+1+s, D): text i with video neg_video[i]; text neg_text[i] with video i
        out["vtm_logits"] = self.itm_head(torch.cat([fused_pos[:, 0], fused_neg[:, 0]]))
        out["vtm_neg_video"], out["vtm_neg_text"] = neg_video, neg_text
        if "mlm_ids" in inputs:
            mlm_ids = inputs["mlm_ids"]
            fused = self.fuse(self.text_encoder(mlm_ids), mlm_ids, v)
            out["mlm_logits"] = self.mlm_head(fused[:, :L])  # (B, L, vocab)
        if "pem_mask" in inputs and self.cfg.num_entities:
            patches = fused_pos[:, L + 1 :]  # (B, h*w, D): skip the text and the video [CLS]
            out["pem_logits"] = self.pem_head(crop_pool(patches, inputs["pem_mask"]))
        return out

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Parameters by part, {part: {"total": n}} as VATT's towers (what model cards read);
        the tied MLM decoder weight is counted once, under text."""

        def n(module: nn.Module | None, skip: set[int] = frozenset()) -> int:
            if module is None:
                return 0
            return sum(p.numel() for p in module.parameters() if id(p) not in skip)

        tied = {id(self.text_encoder.word_embed.weight)}
        counts = {
            "video": n(self.video_encoder),
            "text": n(self.text_encoder),
            "fusion": n(getattr(self, "fusion", None)),
            "heads": n(self.vision_proj) + n(self.text_proj) + 1
            + n(getattr(self, "itm_head", None)) + n(getattr(self, "mlm_head", None), tied)
            + n(getattr(self, "pem_head", None)),
        }  # fmt: skip
        return {part: {"total": n_part} for part, n_part in counts.items()}


def hard_negatives(
    video_vt: torch.Tensor,
    text_vt: torch.Tensor,
    temp: torch.Tensor,
    duplicate_cos: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One hard negative per sample, drawn from the softmax of the VTC similarities of the
    local batch with the positive excluded (its weight is exactly 0, so it is never drawn).

    Args: video_vt, text_vt (B, P) (normalised here); temp scalar; duplicate_cos: candidates
    that are near-duplicates of the positive are not drawn either: a video whose cosine with
    the positive video exceeds it, a text whose cosine with the positive text does (1.0 = none
    excluded, the release). A row with every candidate excluded falls back to all of them.
    Returns (neg_video (B,), neg_text (B,)): for text i a video index != i, for video i a
    text index != i.
    """
    with torch.no_grad():
        v = F.normalize(video_vt.float(), dim=-1)
        t = F.normalize(text_vt.float(), dim=-1)
        sim = v @ t.T / temp.float()  # (B, B): video i vs text j
        eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
        skip_video, skip_text = eye, eye  # (B, B): row i's excluded candidates
        if duplicate_cos < 1.0:
            skip_video = _unless_all(eye | (v @ v.T > duplicate_cos), eye)
            skip_text = _unless_all(eye | (t @ t.T > duplicate_cos), eye)
        weights_t2v = F.softmax(sim.T.masked_fill(skip_video, float("-inf")), dim=1)  # text->videos
        weights_v2t = F.softmax(sim.masked_fill(skip_text, float("-inf")), dim=1)  # video->texts
        return (
            torch.multinomial(weights_t2v, 1).squeeze(1),
            torch.multinomial(weights_v2t, 1).squeeze(1),
        )


def _unless_all(skip: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """`skip` (B, B) with each row that excludes every candidate replaced by `fallback`'s."""
    return torch.where(skip.all(dim=1, keepdim=True), fallback, skip)


__all__ = [
    "ALPRO_PRESETS",
    "ALPRO_RELEASE_PARAMS_M",
    "Alpro",
    "AlproConfig",
    "crop_pool",
    "hard_negatives",
    "make_alpro_config",
]
