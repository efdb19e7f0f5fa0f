"""Fine-tuning data that needs no cluster: the labelled split, decoded-clip caches, training
examples and the evaluation views (clips x crops).

A worker decodes its share of the labelled files once (`ClipCache`): video as JPEG frames at
10 fps (the shards' format, via preprocessing.decode, so fine-tuning sees what pretraining
saw), audio as a waveform already pooled to the model's rate. Training batches then cut a
random window from the cache and augment it (training.data.augment); evaluation cuts `clips`
uniformly spaced windows x `crops` spatial crops and averages the logits per item.
A file that cannot be decoded is an error line, never a crash.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from preprocessing.decode import DecodeError, MediaRange, decode_audio, decode_frames
from preprocessing.shard_format import decode_frames as decode_jpegs
from training.data.augment import audio_to_float, augment_clip, pool_audio
from training.data.loader import ClipShape, clip_strides
from training.eval.benchmarks import (
    ClassificationSet,
    LabelledItem,
    esc50_fold,
    read_esc50,
    read_kinetics,
    read_ucf_split,
)
from training.eval.media import spatial_crops, window_starts
from training.finetune.config import FinetuneConfig, FinetuneDataConfig


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
        """The model's clip shape, with data.frames/height/width where set. ValueError (naming
        data.clip_seconds) when that shape does not fit."""
        shape = clip_shape(model_cfg, data)
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


def clip_shape(model_cfg, data: FinetuneDataConfig) -> ClipShape:
    """The fine-tuning clip shape: the pretraining grid, with data.frames/height/width where
    set (non-zero)."""
    shape = ClipShape.from_model(model_cfg)
    sizes = {k: getattr(data, k) for k in ("frames", "height", "width") if getattr(data, k)}
    return dataclasses.replace(shape, **sizes)


def check_clip_shape(model_cfg, data: FinetuneDataConfig) -> None:
    """ValueError naming data.<size> when a fine-tuning size is not a multiple of the
    model's video patch (the tokenizer cuts whole voxels)."""
    shape = clip_shape(model_cfg, data)
    patch = model_cfg.tokenizer.video_patch
    for key, size, p in zip(
        ("frames", "height", "width"), (shape.frames, shape.height, shape.width), patch
    ):
        if size % p:
            raise ValueError(
                f"data.{key}={size}: must be a multiple of the model's video patch "
                f"{'x'.join(map(str, patch))} (here {p})"
            )


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
            frames = decode_frames(MediaRange(path), spec.fps, spec.short_side, spec.jpeg_qscale)
            if not frames:
                raise ValueError("no video frames decoded")
            return frames
        pcm = decode_audio(MediaRange(path), spec.sample_rate)  # int16 [S], the whole file
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


def batches_of(views: torch.Tensor, size: int):
    for i in range(0, len(views), size):
        yield views[i : i + size]


def load_dataset(cfg: FinetuneConfig) -> ClassificationSet:
    """The run's train/test split from the benchmark's own files (bad rows: errors).
    ValueError names the file when a list is unreadable or a split/fold is empty."""
    data = cfg.data
    if cfg.dataset == "kinetics":
        return read_kinetics(data.kinetics_train_csv, data.kinetics_test_csv, data.kinetics_videos)
    if cfg.task == "video":
        return read_ucf_split(data.ucf101_splits, data.ucf101_videos, data.split)
    classes, items, errors = read_esc50(data.esc50_csv, data.esc50_audio)
    fold = esc50_fold(classes, items, data.fold)
    return ClassificationSet(fold.classes, fold.train, fold.test, errors)
