"""Fine-tuning pieces that need no cluster: decoded-clip caches, training batches, the
evaluation views (clips x crops), the classifier (a VATT tower + a linear head), mixup, top-k.

A worker decodes its share of the labelled files once (`ClipCache`): video as JPEG frames at
10 fps (the shards' format, via preprocessing.decode, so fine-tuning sees what pretraining
saw), audio as a waveform already pooled to the model's rate. Training batches then cut a
random window from the cache and augment it (training.augment); evaluation cuts `clips`
uniformly spaced windows x `crops` spatial crops and averages the logits per item.
A file that cannot be decoded is an error line, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from preprocessing.decode import DecodeError, decode_audio, decode_frames
from preprocessing.shard_format import decode_frames as decode_jpegs
from training.augment import audio_to_float, augment_clip, center_crop_resize, pool_audio
from training.eval_data import (
    ClassificationSet,
    LabelledItem,
    esc50_fold,
    read_esc50,
    read_ucf_split,
)
from training.finetune_config import SCRATCH_PREFIX, FinetuneConfig, FinetuneDataConfig
from training.loader import ClipShape, clip_strides
from training.retrieval import window_starts

# decode_frames / decode_audio always pass -t: this many seconds means "the whole file".
_WHOLE_FILE_S = 1e7


@dataclass(frozen=True)
class ClipSpec:
    """How one model input is cut from a decoded file (from the model's shape + data config)."""

    task: str  # "video" | "audio"
    shape: ClipShape
    frame_stride: int  # every n-th decoded frame (8 frames over 3.2 s at 10 fps: 4)
    audio_stride: int  # average-pool factor from sample_rate to the model's rate
    fps: float
    sample_rate: int
    short_side: int  # decoded frames' short side
    jpeg_qscale: int
    peak_normalize: bool = True  # audio: each file scaled to peak 1

    @classmethod
    def build(cls, task: str, model_cfg, data: FinetuneDataConfig) -> ClipSpec:
        """ValueError (naming data.clip_seconds) when the model's shape does not fit."""
        shape = ClipShape.from_model(model_cfg)
        # Only the task's own modality must fit clip_seconds: the other is made to fit exactly.
        fit = (
            dataclasses.replace(shape, audio_samples=round(data.clip_seconds * data.sample_rate))
            if task == "video"
            else dataclasses.replace(shape, frames=1)
        )
        frame_stride, audio_stride = clip_strides(
            data.clip_seconds, fit, data.fps, data.sample_rate
        )
        side = data.short_side or 2 * math.ceil(max(shape.height, shape.width) * 8 / 7 / 2)
        return cls(
            task, shape, frame_stride, audio_stride, data.fps, data.sample_rate, side,
            data.jpeg_qscale, data.audio_peak_normalize,
        )  # fmt: skip

    @property
    def span_frames(self) -> int:
        """Decoded frames one video window covers."""
        return (self.shape.frames - 1) * self.frame_stride + 1


class ClipCache:
    """The decoded files of one worker's share: video JPEG frames or pooled audio waveforms.

    Memory: video ~ frames x a few KB (e.g. 70 frames x 3 KB for a 7 s UCF101 clip at short
    side 73); audio 4 bytes per model-rate sample (a 5 s ESC-50 clip: 40 KB at the debug
    model's 2 kHz, 960 KB at 48 kHz)."""

    def __init__(self, items: list[LabelledItem], spec: ClipSpec):
        self.spec = spec
        self.items: list[LabelledItem] = []
        self.data: list[list[bytes] | torch.Tensor] = []
        self.errors: list[str] = []  # "key: reason"
        for item in items:
            try:
                self.data.append(self._decode(item))
                self.items.append(item)
            except (DecodeError, ValueError, OSError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                self.errors.append(f"{item.key}: {reason}")

    def _decode(self, item: LabelledItem) -> list[bytes] | torch.Tensor:
        spec, path = self.spec, str(item.path)
        if spec.task == "video":
            frames = decode_frames(
                path, 0.0, _WHOLE_FILE_S, spec.fps, spec.short_side, spec.jpeg_qscale
            )
            if not frames:
                raise ValueError("no video frames decoded")
            return frames
        pcm = decode_audio(path, 0.0, _WHOLE_FILE_S, spec.sample_rate)  # int16 [S]
        if len(pcm) < spec.audio_stride:
            raise ValueError("no audio decoded")
        wave = pool_audio(audio_to_float(pcm), spec.audio_stride)  # float32 [S / stride]
        peak = float(wave.abs().max())
        return wave / peak if spec.peak_normalize and peak > 0 else wave

    def __len__(self) -> int:
        return len(self.items)

    # ---- training ----

    def train_example(self, i: int, augment, gen: torch.Generator) -> torch.Tensor:
        """A random window of item i, augmented: video float [T, H, W, 3], audio float [S]."""
        spec, data = self.spec, self.data[i]
        if spec.task == "video":
            start = int(
                torch.randint(0, max(0, len(data) - spec.span_frames) + 1, (), generator=gen)
            )
            frames = self._frames(data, start)  # uint8 [T, H0, W0, 3]
            video, _ = augment_clip(
                frames, torch.zeros(0), augment, spec.shape.height, spec.shape.width, gen
            )
            return video
        need = spec.shape.audio_samples
        start = int(torch.randint(0, max(0, len(data) - need) + 1, (), generator=gen))
        return _pad(data[start : start + need], need)

    def _frames(self, jpegs: list[bytes], start: int) -> np.ndarray:
        """uint8 [T, H0, W0, 3]: T frames every frame_stride-th from `start`; the last
        frame repeats past the end (as the training loader does for short windows)."""
        index = np.minimum(
            start + np.arange(self.spec.shape.frames) * self.spec.frame_stride, len(jpegs) - 1
        )
        return decode_jpegs([jpegs[j] for j in index])

    # ---- evaluation ----

    def eval_views(self, i: int, clips: int, crops: int) -> torch.Tensor:
        """Every view of item i: video float [clips * crops, T, H, W, 3] (crops vary fastest),
        audio float [clips, S]; windows uniformly spaced over the file."""
        spec, data = self.spec, self.data[i]
        if spec.task == "audio":
            need = spec.shape.audio_samples
            wave = _pad(data, need)
            starts = window_starts(len(wave), need, clips)
            return torch.stack([wave[s : s + need] for s in starts])  # [clips, S]
        views = []
        for start in window_starts(len(data), spec.span_frames, clips):
            frames = self._frames(data, start)
            views += spatial_crops(frames, crops, spec.shape.height, spec.shape.width)
        return torch.stack(views)  # [clips * crops, T, H, W, 3]


def _pad(wave: torch.Tensor, samples: int) -> torch.Tensor:
    """Silence after the end of a waveform shorter than `samples` (as the training loader)."""
    if len(wave) >= samples:
        return wave
    return torch.cat([wave, wave.new_zeros(samples - len(wave))])


def spatial_crops(frames: np.ndarray, crops: int, height: int, width: int) -> list[torch.Tensor]:
    """`crops` square crops spaced evenly along the long side (1: the centre; 3: the usual
    left/centre/right, or top/centre/bottom for portrait video), each resized to
    height x width. frames: uint8 [T, H0, W0, 3] -> float [T, height, width, 3] each."""
    _, h0, w0, _ = frames.shape
    side = min(h0, w0)
    offsets = (
        [round(o) for o in np.linspace(0, max(h0, w0) - side, crops)]
        if crops > 1
        else [(max(h0, w0) - side) // 2]
    )
    out = []
    for o in offsets:
        square = frames[:, o : o + side] if h0 > w0 else frames[:, :, o : o + side]
        out.append(center_crop_resize(square, height, width))  # scale only: it is square
    return out


def batches_of(views: torch.Tensor, size: int):
    for i in range(0, len(views), size):
        yield views[i : i + size]


# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------


class TowerClassifier(nn.Module):
    """One VATT tower's aggregation-token output (`video_features` / `audio_features`) ->
    dropout -> a new linear head over the classes."""

    def __init__(self, vatt: nn.Module, task: str, num_classes: int, dropout: float = 0.0):
        super().__init__()
        # Keep only what this tower's features use: DDP wants a gradient for every
        # parameter, and the text tower and common-space heads would get none.
        for name in ("video_head", "audio_head", "text_head"):
            setattr(vatt, name, nn.Identity())
        for modality in ("video", "audio", "text"):
            if modality != task:
                setattr(vatt, f"{modality}_embed", nn.Identity())
                if not vatt.cfg.shared_backbone:
                    del vatt.backbones[modality]
        self.vatt = vatt
        self.task = task
        d_model = (vatt.cfg.video if task == "video" else vatt.cfg.audio).d_model
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(d_model, num_classes)
        # A zero head starts every class at the same logit (loss = log classes), so the first
        # steps do not push the pretrained tower around with a random head's gradients.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """video (B, T, H, W, 3) or audio (B, S) in [-1, 1] -> logits (B, classes)."""
        tower = self.vatt.video_features if self.task == "video" else self.vatt.audio_features
        return self.head(self.dropout(tower(x)))  # (B, D) -> (B, classes)


# ---------------------------------------------------------------------------------------------
# Loss pieces and metrics
# ---------------------------------------------------------------------------------------------


def mixup(
    x: torch.Tensor, labels: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix the batch with a permutation of itself: x' = lam x + (1 - lam) x[perm],
    lam ~ Beta(alpha, alpha). Returns (x', labels, labels[perm], lam); the loss is
    lam * CE(y) + (1 - lam) * CE(y[perm]), i.e. CE against the mixed (soft) targets."""
    # Beta(a, a) from two Gammas, drawn with our generator (torch.distributions has none).
    a = torch.full((2,), float(alpha))
    g = torch._standard_gamma(a, generator=gen)
    lam = float(g[0] / g.sum())
    perm = torch.randperm(len(x), generator=gen)
    return lam * x + (1.0 - lam) * x[perm], labels, labels[perm], lam


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """How many rows rank their label within the top k, per k (k capped at the number of
    classes). Ties count against the label (rank = 1 + other classes scoring >= it), and NaN
    logits are -inf: a collapsed or diverged model (e.g. the zero-initialised head) scores
    nothing instead of "predicting" class 0."""
    logits = logits.float().nan_to_num(nan=float("-inf"))  # (N, C)
    own = logits.gather(1, labels[:, None])  # (N, 1)
    rank = (logits >= own).sum(dim=1)  # (N,): 1 + others at or above the label's logit
    return {k: int((rank <= min(k, logits.shape[1])).sum()) for k in ks}


def predict_items(
    model: nn.Module, cache: ClipCache, clips: int, crops: int, batch_size: int
) -> list[tuple[str, int, torch.Tensor]]:
    """(key, label, mean logits over the item's views) for every cached item, in eval mode."""
    out = []
    with torch.no_grad():
        for i, item in enumerate(cache.items):
            views = cache.eval_views(i, clips, crops)
            logits = torch.cat([model(v) for v in batches_of(views, batch_size)])  # (V, classes)
            out.append((item.key, item.label, logits.float().mean(dim=0)))  # (classes,)
    return out


def loss_fn(logits, labels, smoothing: float, mixed=None) -> torch.Tensor:
    """Cross-entropy with label smoothing; with `mixed` = (labels_b, lam), the mixup loss."""
    if mixed is None:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    labels_b, lam = mixed
    return lam * F.cross_entropy(logits, labels, label_smoothing=smoothing) + (
        1.0 - lam
    ) * F.cross_entropy(logits, labels_b, label_smoothing=smoothing)


# ---------------------------------------------------------------------------------------------
# Inputs of a run: the labelled set and the pretrained tower
# ---------------------------------------------------------------------------------------------


def load_dataset(cfg: FinetuneConfig) -> ClassificationSet:
    """The run's train/test split from the benchmark's own files (bad rows: errors).
    ValueError names the file when a list is unreadable or a split/fold is empty."""
    data = cfg.data
    if cfg.task == "video":
        return read_ucf_split(data.ucf101_splits, data.ucf101_videos, data.split)
    classes, items, errors = read_esc50(data.esc50_csv, data.esc50_audio)
    fold = esc50_fold(classes, items, data.fold)
    return ClassificationSet(fold.classes, fold.train, fold.test, errors)


def pretrained_model_config(init: str):
    """The ModelConfig `init` holds, read without loading weights (for checks on the
    driver). CheckpointError / ValueError name the bad path or preset."""
    from training.checkpoint import (
        EXPORT_CONFIG,
        CheckpointError,
        read_trainer_state,
        resolve_pretrained,
    )
    from training.model import ModelConfig, make_config

    if init.startswith(SCRATCH_PREFIX):
        return make_config(init[len(SCRATCH_PREFIX) :])
    source = resolve_pretrained(init)
    if source.kind == "export":
        doc = json.loads((source.path / EXPORT_CONFIG).read_text())
        return ModelConfig.from_dict(doc["model_config"])
    state = read_trainer_state(source.path)
    if "model_config" not in state:
        raise CheckpointError(f"{source.path}: its trainer state has no model_config")
    return ModelConfig.from_dict(state["model_config"])


def load_backbone(init: str, droptoken_rate: float, seed: int) -> tuple[nn.Module, dict]:
    """The VATT model to fine-tune and a description of where it came from.

    `init=preset:<name>` builds that preset with a random init (seeded: every rank gets the
    same weights); anything else goes through `checkpoint.load_pretrained` (export, checkpoint
    or run folder). The DropToken rate is replaced by `droptoken_rate`."""
    from training.checkpoint import load_pretrained
    from training.model import VATT, build_model_from_config, make_config

    if init.startswith(SCRATCH_PREFIX):
        torch.manual_seed(seed)
        # build_model_from_config: a preset with video_init starts from its image checkpoint.
        model = build_model_from_config(make_config(init[len(SCRATCH_PREFIX) :]))
        source = {"kind": "scratch", "preset": model.cfg.name, "step": 0}
    else:
        model, found = load_pretrained(init)
        source = {"kind": found.kind, "path": str(found.path), "step": found.step}
    if model.cfg.droptoken_rate != droptoken_rate:
        # The rate lives in the config the DropToken modules are built from: rebuild, reload.
        with torch.device("meta"):
            rebuilt = VATT(dataclasses.replace(model.cfg, droptoken_rate=droptoken_rate))
        rebuilt.load_state_dict(model.state_dict(), strict=True, assign=True)
        model = rebuilt
    return model.train(), source
