"""Typed configs of the VATT model: tokenizers/positions, transformer size, heads, whole model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from training.config_io import require_at_least

BN_MODES = ("paper", "official")
# ViViT (Arnab et al. 2021) video backbones, in the paper's order: Model 1 (VATT's own joint
# space-time attention), 2 (factorised encoder), 3 (factorised self-attention), 4 (factorised
# dot-product attention). training/model/vivit.py builds them.
VIDEO_BACKBONES = (
    "joint",
    "factorised_encoder",
    "factorised_self_attention",
    "factorised_dot_product",
)
VIDEO_TOKENIZATIONS = ("tubelet", "frame")
VIDEO_POSITIONS = ("factorised", "spatial_2d")
# DropToken units for video: single tokens, tubes (the same spatial positions in every time
# slice) or frames (whole time slices); "auto" = token for joint, tube for factorised.
VIDEO_DROPTOKEN_UNITS = ("auto", "token", "tube", "frame")
VIDEO_INIT_MODES = ("central_frame", "inflate")
POSITION_STYLES = ("paper", "official")


@dataclass(frozen=True)
class TokenizerConfig:
    """Raw-signal tokenizers, positional tables and the input grid they were trained at.

    The input sizes are the *trained* grid: the learnable position tables are sized from them,
    and other grids (e.g. 320x320 evaluation) interpolate those tables. They are also the
    default sizes for FLOP counts.
    """

    # 4x16x16 voxels: the paper's ViT-3D patch; 32x224x224 -> 8x14x14 = 1568 tokens.
    video_patch: tuple[int, int, int] = (4, 16, 16)
    # 128 raw samples per audio token: 153,600 samples (3.2 s at 48 kHz) -> 1200 tokens.
    audio_patch: int = 128
    # 2**16 word ids, the vocabulary size of the paper (built from the captions); 0 = padding.
    vocab_size: int = 2**16
    # Trained video grid: 32 frames (3.2 s at 10 fps) at 224x224, as in pre-training.
    frames: int = 32
    height: int = 224
    width: int = 224
    # Trained audio length: 3.2 s at 48 kHz, in sync with the frames.
    audio_samples: int = 153_600
    # Text shape used for FLOP counts: the 5 nearest captions of up to 16 words (spec section 1).
    captions: int = 5
    words: int = 16
    # T5's relative-position bias: 32 buckets, exact up to 16 then log-spaced up to distance 64.
    rel_pos_buckets: int = 32
    rel_pos_max_distance: int = 64

    def __post_init__(self) -> None:
        if len(self.video_patch) != 3 or min(self.video_patch) < 1:
            raise ValueError(
                f"tokenizer.video_patch={self.video_patch}: give three positive sizes (t, h, w)"
            )
        pt, ph, pw = self.video_patch
        for name, size, patch in (
            ("frames", self.frames, pt),
            ("height", self.height, ph),
            ("width", self.width, pw),
        ):
            if size < patch or size % patch:
                raise ValueError(
                    f"tokenizer.{name}={size} must be a positive multiple of the video patch "
                    f"({patch}); change {name} or video_patch"
                )
        if self.audio_patch < 1 or self.audio_samples % self.audio_patch or self.audio_samples < 1:
            raise ValueError(
                f"tokenizer.audio_samples={self.audio_samples} must be a positive multiple of "
                f"audio_patch={self.audio_patch}"
            )
        if self.vocab_size < 2:
            raise ValueError(f"tokenizer.vocab_size={self.vocab_size}: need >= 2 (0 is padding)")
        if self.captions < 1 or self.words < 1:
            raise ValueError(
                f"tokenizer.captions={self.captions}, words={self.words}: both must be >= 1"
            )
        if self.rel_pos_buckets < 2 or self.rel_pos_max_distance <= self.rel_pos_buckets // 2:
            raise ValueError(
                f"tokenizer.rel_pos_buckets={self.rel_pos_buckets}, rel_pos_max_distance="
                f"{self.rel_pos_max_distance}: need buckets >= 2 and max distance > buckets/2"
            )

    @property
    def video_grid(self) -> tuple[int, int, int]:
        """Trained token grid (t, h, w) of the video position tables."""
        pt, ph, pw = self.video_patch
        return self.frames // pt, self.height // ph, self.width // pw

    @property
    def audio_tokens(self) -> int:
        """Trained length of the audio position table."""
        return self.audio_samples // self.audio_patch


@dataclass(frozen=True)
class TransformerConfig:
    """Size of one pre-LN transformer encoder (the paper's Small/Base/Medium/Large)."""

    num_layers: int = 12
    d_model: int = 768
    d_ff: int = 3072
    num_heads: int = 12
    # 0.0: the spec names no dropout for pre-training and DropToken already regularises;
    # the official TF code uses 0.1, so it stays a field (tunable).
    dropout: float = 0.0
    attn_dropout: float = 0.0
    # 1e-6 as in ViT and the official VATT configs (layer_norm_epsilon).
    norm_eps: float = 1e-6
    # Recompute each block in backward: trades ~30% more compute for activation memory.
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        require_at_least(self, "transformer", ("num_layers", "d_model", "d_ff", "num_heads"), 1)
        if self.d_model % self.num_heads:
            raise ValueError(
                f"transformer.d_model={self.d_model} is not divisible by num_heads="
                f"{self.num_heads}; pick num_heads that divides d_model"
            )
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"transformer.{name}={getattr(self, name)} must be in [0, 1)")


@dataclass(frozen=True)
class HeadConfig:
    """Common-space projection heads (video-audio space `va`, video-text space `vt`)."""

    # 512 / 256: the paper's d_va and d_vt.
    d_va: int = 512
    d_vt: int = 256
    # Where BatchNorm sits: "paper" (section 3.3 of the paper) or "official" (the TF code's
    # FAC head); heads.py documents the difference.
    bn: str = "paper"
    # torch momentum 0.1 == TF/Keras momentum 0.9, the official setting.
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    # Text BatchNorm statistics over valid captions only (a caption with at least one token);
    # False: every caption slot, so AudioSet's all-padding captions enter the statistics.
    text_bn_valid_only: bool = False

    def __post_init__(self) -> None:
        if self.bn not in BN_MODES:
            raise ValueError(f"head.bn={self.bn!r}: choose one of {BN_MODES}")
        if self.d_va < 1 or self.d_vt < 1:
            raise ValueError(f"head.d_va={self.d_va}, d_vt={self.d_vt}: both must be >= 1")
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"head.bn_momentum={self.bn_momentum} must be in (0, 1]")


@dataclass(frozen=True)
class ModelConfig:
    """The whole VATT model; a checkpoint stores `dataclasses.asdict(cfg)` to rebuild it."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    # MBS is the project default: Medium video, Base audio, Small text.
    video: TransformerConfig = field(default_factory=lambda: TransformerConfig(12, 1024, 4096, 16))
    audio: TransformerConfig = field(default_factory=lambda: TransformerConfig(12, 768, 3072, 12))
    text: TransformerConfig = field(default_factory=lambda: TransformerConfig(6, 512, 2048, 8))
    # True = VATT-MA: one transformer for all modalities; video/audio/text must then be equal.
    shared_backbone: bool = False
    head: HeadConfig = field(default_factory=HeadConfig)
    # Fraction of video/audio tokens DROPPED in training (paper default 0.5).
    droptoken_rate: float = 0.5
    name: str = "custom"
    # ---- ViViT options (docs/model.md "ViViT backbones"); the defaults are VATT's model ----
    # One of VIDEO_BACKBONES; "joint" = every token attends to every token (ViViT Model 1).
    video_backbone: str = "joint"
    # "tubelet": tokenizer.video_patch voxels (t x h x w). "frame": uniform frame sampling, the
    # central frame of every t-frame window cut into 2-D h x w patches: the same token grid,
    # so the two are comparable (and equal at a central-frame image init).
    video_tokenization: str = "tubelet"
    # "factorised": VATT's temporal + vertical + horizontal tables. "spatial_2d": a ViT-style
    # (h, w) table + a temporal table, the layout a 2-D ViT checkpoint's pos_embed fills.
    video_positions: str = "factorised"
    # Depth of Model 2's temporal encoder (ViViT-B FE uses 4); its width is the video tower's,
    # whose num_layers is the spatial encoder's depth.
    video_temporal_layers: int = 4
    # Video DropToken unit, one of VIDEO_DROPTOKEN_UNITS (factorised backbones need a grid).
    video_droptoken: str = "auto"
    # Local 2-D ViT checkpoint (timm layout; .safetensors or a torch state dict) that
    # initialises the video tower in `build_model_from_config`; "" = random init.
    video_init: str = ""
    # How a 2-D patch filter becomes a tubelet filter: "central_frame" (filter at the centre
    # time index, zeros elsewhere; ViViT's best) or "inflate" (tiled over time, divided by t).
    video_init_mode: str = "central_frame"
    # Video/audio position embeddings, one of POSITION_STYLES. "paper": learnable tables
    # (truncated normal 0.02) added to the tokens. "official" (google-research vatt
    # vitx3d/autx1d): tables initialised N(0, d^-0.5), and LayerNorm + dropout
    # (`position_dropout`) on the tokens after the positions are added.
    position_embedding: str = "paper"
    position_dropout: float = 0.1
    # A learnable temporal position table on Model 2's temporal encoder inputs (scenic's ViViT
    # adds one); False: the slice order is unknown to the temporal encoder.
    video_temporal_positions: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.position_dropout < 1.0:
            raise ValueError(f"model.position_dropout={self.position_dropout} must be in [0, 1)")
        if not 0.0 <= self.droptoken_rate < 1.0:
            raise ValueError(
                f"model.droptoken_rate={self.droptoken_rate} must be in [0, 1) "
                "(it is the dropped fraction)"
            )
        for name, choices in (
            ("video_backbone", VIDEO_BACKBONES),
            ("video_tokenization", VIDEO_TOKENIZATIONS),
            ("video_positions", VIDEO_POSITIONS),
            ("video_droptoken", VIDEO_DROPTOKEN_UNITS),
            ("video_init_mode", VIDEO_INIT_MODES),
            ("position_embedding", POSITION_STYLES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"model.{name}={getattr(self, name)!r}: choose one of {', '.join(choices)}"
                )
        if self.video_temporal_layers < 1:
            raise ValueError(
                f"model.video_temporal_layers={self.video_temporal_layers} must be >= 1"
            )
        factorised = self.video_backbone != "joint"
        if factorised and self.video_droptoken == "token":
            raise ValueError(
                f"model.video_droptoken=token drops single tokens, which breaks the (time, "
                f"space) grid that video_backbone={self.video_backbone} needs; use tube, frame "
                "or auto"
            )
        if self.video_backbone == "factorised_dot_product" and self.video.num_heads % 2:
            raise ValueError(
                f"model.video_backbone=factorised_dot_product splits the heads half spatial, "
                f"half temporal: video.num_heads={self.video.num_heads} must be even"
            )
        if self.shared_backbone and factorised:
            raise ValueError(
                f"model.shared_backbone=True shares one joint transformer across modalities; "
                f"video_backbone={self.video_backbone} needs video_backbone=joint or "
                "shared_backbone=False"
            )
        if self.shared_backbone and not (self.video == self.audio == self.text):
            raise ValueError(
                "model.shared_backbone=True needs identical video/audio/text transformer "
                "configs; set all three to the same TransformerConfig"
            )

    @property
    def video_droptoken_unit(self) -> str:
        """The video DropToken unit in effect: "auto" resolved by the backbone."""
        if self.video_droptoken != "auto":
            return self.video_droptoken
        return "token" if self.video_backbone == "joint" else "tube"

    @property
    def video_patch(self) -> tuple[int, int, int]:
        """The video tokenizer's filter (t, h, w): t = 1 for frame sampling."""
        pt, ph, pw = self.tokenizer.video_patch
        return (1, ph, pw) if self.video_tokenization == "frame" else (pt, ph, pw)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild a config from `dataclasses.asdict(cfg)` (e.g. stored in a checkpoint)."""
        data = dict(data)
        tok = dict(data.pop("tokenizer", {}))
        if "video_patch" in tok:
            tok["video_patch"] = tuple(tok["video_patch"])
        return cls(
            tokenizer=TokenizerConfig(**tok),
            video=TransformerConfig(**data.pop("video", {})),
            audio=TransformerConfig(**data.pop("audio", {})),
            text=TransformerConfig(**data.pop("text", {})),
            head=HeadConfig(**data.pop("head", {})),
            **data,
        )

    def replace(self, **overrides) -> ModelConfig:
        """`dataclasses.replace` where a dict value updates the nested config of that name.

        Example: `cfg.replace(video={"num_layers": 2}, droptoken_rate=0.25)`. The extra key
        `backbone` updates video, audio and text together (what a shared MA tower needs).
        """
        names = {f.name for f in dataclasses.fields(self)}
        overrides = dict(overrides)
        backbone = overrides.pop("backbone", None)
        if backbone is not None:
            for key in ("video", "audio", "text"):
                overrides[key] = {**backbone, **overrides.get(key, {})}
        updates = {}
        for key, value in overrides.items():
            if key not in names:
                raise ValueError(f"unknown model config field {key!r}; choose from {sorted(names)}")
            current = getattr(self, key)
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                sub_names = {f.name for f in dataclasses.fields(current)}
                unknown = set(value) - sub_names
                if unknown:
                    raise ValueError(
                        f"unknown field(s) {sorted(unknown)} for model.{key}; "
                        f"choose from {sorted(sub_names)}"
                    )
                value = dataclasses.replace(current, **value)
            updates[key] = value
        return dataclasses.replace(self, **updates)
