"""Distributed embedding extraction with Ray Data: media files -> windows -> frozen-model outputs.

    items --from_items--> decode (tasks: ffmpeg, `num_windows` windows (x `crops` spatial
                          crops for video) per item, one row per view)
          --map_batches--> embed (actors: the model, on a GPU each when there are GPUs)
          --iter_batches--> the driver gathers (items, windows, d) arrays per output

A file that cannot be decoded becomes one row that carries its error through the pipeline
(the embed actors skip it), so one bad file costs one line in the report, never the run.
The model travels once through the object store as (config, weights); every actor rebuilds
it. Text is cheap and stays on the driver (`training.eval.heldout.embed_texts`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

MODALITIES = ("video", "audio")
# What each modality's `encode_*` returns, i.e. the outputs a caller may ask for.
OUTPUTS = {
    "video": ("video_features", "video_va", "video_vt"),
    "audio": ("audio_features", "audio_va"),
}
# Shards and the pretraining loader use 48 kHz audio; models trained at a lower rate
# (the debug preset) pool it by an integer factor, exactly as the loader does.
SOURCE_AUDIO_RATE = 48_000


@dataclass(frozen=True)
class MediaItem:
    """One file (or a [start, end] segment of one) to embed; `key` names it in errors."""

    key: str
    path: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class WindowSpec:
    """How to cut an item into model inputs: `num_windows` uniformly spaced clips, each as
    `crops` square crops along the long side (video; 1 = the centre crop)."""

    modality: str
    num_windows: int = 4
    clip_seconds: float = 3.2
    # video: the model's grid (centre crop); audio: samples the model takes per clip
    frames: int = 8
    height: int = 64
    width: int = 64
    audio_samples: int = 6400
    crops: int = 1

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality {self.modality!r}: choose one of {MODALITIES}")
        if self.num_windows < 1 or self.crops < 1:
            raise ValueError(f"windows={self.num_windows} and crops={self.crops} must be >= 1")
        if self.modality == "audio" and self.crops != 1:
            raise ValueError(f"crops={self.crops}: audio has no spatial crops")

    @property
    def num_views(self) -> int:
        """Model inputs per item: windows x crops."""
        return self.num_windows * self.crops

    @classmethod
    def for_model(
        cls,
        model_cfg,
        modality: str,
        num_windows: int = 4,
        clip_seconds: float = 3.2,
        size: int | None = None,
        crops: int = 1,
    ) -> WindowSpec:
        """The model's trained clip shape (`size` overrides height and width, e.g. 224)."""
        tok = model_cfg.tokenizer
        return cls(
            modality,
            num_windows,
            clip_seconds,
            tok.frames,
            size or tok.height,
            size or tok.width,
            tok.audio_samples,
            crops if modality == "video" else 1,
        )

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one window as decoded (uint8 video, float32 audio)."""
        if self.modality == "video":
            return (self.frames, self.height, self.width, 3)
        return (self.audio_samples,)


@dataclass
class Embeddings:
    """Per item and view (window x crop): outputs[name] (items, V, d) float32, valid (items, V)
    bool."""

    keys: list[str]
    outputs: dict[str, np.ndarray]
    valid: np.ndarray
    errors: dict[str, str]  # item key -> one-line reason

    def pooled(self, name: str, normalize: bool = True) -> np.ndarray:
        """Mean over an item's decoded windows (then l2-normalised): (items, d)."""
        x = self.outputs[name]
        mask = self.valid[..., None]  # (items, W, 1)
        mean = np.where(mask, x, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
        if normalize:
            mean = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return mean.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Stage 1: decode (Ray Data tasks)
# ---------------------------------------------------------------------------------------------


def decode_item(item: MediaItem, spec: WindowSpec) -> np.ndarray:
    """(num_views, *spec.input_shape()) for one item; raises VideoDecodeError (a reason)."""
    if spec.modality == "video":
        from training.eval.media import decode_windows

        clips = decode_windows(
            item.path,
            num_windows=spec.num_windows,
            clip_seconds=spec.clip_seconds,
            frames=spec.frames,
            height=spec.height,
            width=spec.width,
            start=item.start,
            end=item.end,
            crops=spec.crops,
        )
        return clips.numpy()  # uint8 (views, T, H, W, 3)
    from training.data.augment import pool_audio
    from training.eval.media import decode_audio_windows

    source_samples = round(spec.clip_seconds * SOURCE_AUDIO_RATE)
    stride = source_samples // spec.audio_samples
    if stride < 1 or stride * spec.audio_samples != source_samples:
        raise ValueError(
            f"clip_seconds={spec.clip_seconds} at {SOURCE_AUDIO_RATE} Hz is not a whole "
            f"multiple of the model's audio_samples={spec.audio_samples}"
        )
    import torch

    audio = decode_audio_windows(
        item.path,
        samples=source_samples,
        rate=SOURCE_AUDIO_RATE,
        num_windows=spec.num_windows,
    )  # (W, source_samples) float32 in [-1, 1]
    return pool_audio(torch.from_numpy(audio), stride).numpy()  # (W, audio_samples)


def _decode_batch(batch: dict[str, np.ndarray], spec: WindowSpec) -> dict[str, np.ndarray]:
    """Items -> one row per window (or one error row per undecodable item)."""
    from training.eval.media import VideoDecodeError

    rows: dict[str, list] = {"idx": [], "window": [], "error": [], "clip": []}
    dtype = np.uint8 if spec.modality == "video" else np.float32
    for i, idx in enumerate(batch["idx"]):
        start, end = float(batch["start"][i]), float(batch["end"][i])
        item = MediaItem(
            str(batch["key"][i]),
            str(batch["path"][i]),
            None if np.isnan(start) else start,
            None if np.isnan(end) else end,
        )
        try:
            clips = decode_item(item, spec)
            error = ""
        except (VideoDecodeError, OSError, ValueError) as e:
            # A placeholder window keeps the tensor column one shape; "error" marks it.
            clips = np.zeros((1, *spec.input_shape()), dtype)
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
        for w, clip in enumerate(clips):
            rows["idx"].append(int(idx))
            rows["window"].append(w)
            rows["error"].append(error)
            rows["clip"].append(clip.astype(dtype, copy=False))
    return {
        "idx": np.asarray(rows["idx"], np.int64),
        "window": np.asarray(rows["window"], np.int64),
        "error": np.asarray(rows["error"], dtype=object),
        "clip": np.stack(rows["clip"]),
    }


# ---------------------------------------------------------------------------------------------
# Stage 2: embed (Ray Data actors)
# ---------------------------------------------------------------------------------------------


def model_payload(model) -> dict[str, Any]:
    """What an embed actor needs to rebuild `model`: architecture, config dict, CPU weights."""
    return {
        "architecture": getattr(model, "architecture", None),
        "config": dataclasses.asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def build_from_payload(payload: dict[str, Any], device: str = "cpu"):
    from training.model import build_architecture

    model = build_architecture(payload.get("architecture"), payload["config"], device="meta")
    state = {k: v.to(device) for k, v in payload["state_dict"].items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


class Embedder:
    """A Ray Data actor holding one model replica; windows in, requested outputs out."""

    def __init__(self, payload_ref: list, spec: WindowSpec, outputs: tuple[str, ...]):
        import ray
        import torch

        payload = ray.get(payload_ref[0])  # wrapped in a list so Ray passes the ref itself
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = build_from_payload(payload, self.device)
        self.spec = spec
        self.outputs = outputs
        self.dims = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from training.eval.media import to_model_input

        ok = np.array([not e for e in batch["error"]], dtype=bool)
        n = len(ok)
        result = {k: batch[k] for k in ("idx", "window", "error")}
        encoded: dict[str, np.ndarray] = {}
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["clip"][ok])).to(self.device)
            with torch.no_grad():
                if self.spec.modality == "video":
                    out = self.model.encode_video(to_model_input(x))  # x (B, T, H, W, 3) uint8
                else:
                    out = self.model.encode_audio(x.float())  # x (B, S) in [-1, 1]
            encoded = {k: out[k].float().cpu().numpy() for k in self.outputs}
            self.dims = {k: v.shape[1] for k, v in encoded.items()}
        for name in self.outputs:
            dim = self.dims[name] if self.dims else self._dim(name)
            full = np.zeros((n, dim), np.float32)
            if name in encoded:
                full[ok] = encoded[name]
            result[name] = full
        return result

    def _dim(self, name: str) -> int:
        cfg = self.model.cfg
        tower = cfg.video if self.spec.modality == "video" else cfg.audio
        return {"video_vt": cfg.head.d_vt}.get(
            name, tower.d_model if name.endswith("features") else cfg.head.d_va
        )


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


def extract_embeddings(
    model,
    items: list[MediaItem],
    spec: WindowSpec,
    outputs: tuple[str, ...],
    *,
    batch_size: int = 16,
    actors: int | None = None,
    progress: bool = True,
    desc: str = "embedding",
) -> Embeddings:
    """Embed every window of every item with Ray Data on the connected Ray cluster.

    Args:
        model: a model with encode_video / encode_audio (its architecture, config and
            weights are shipped to the actors).
        items: files (or segments) to embed; `key`s name them in errors.
        outputs: names from OUTPUTS[spec.modality], e.g. ("video_vt", "video_features").
        actors: model replicas; default one per GPU, else one (CPU inference is
            compute-bound and the decode tasks need the other cores).
    Returns:
        Embeddings with (items, num_views, d) arrays (views = windows x crops); items that
        failed are all-invalid and named in `errors`.
    """
    import ray
    from tqdm import tqdm

    unknown = set(outputs) - set(OUTPUTS[spec.modality])
    if unknown:
        raise ValueError(f"unknown {spec.modality} outputs {sorted(unknown)}")
    n, W = len(items), spec.num_views
    arrays = {name: np.zeros((n, W, 0), np.float32) for name in outputs}
    valid = np.zeros((n, W), dtype=bool)
    errors: dict[str, str] = {}
    if n == 0:
        return Embeddings([], arrays, valid, errors)

    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = actors or max(1, gpus)
    payload_ref = ray.put(model_payload(model))
    rows = [
        {
            "idx": i,
            "key": it.key,
            "path": it.path,
            "start": np.nan if it.start is None else it.start,
            "end": np.nan if it.end is None else it.end,
        }
        for i, it in enumerate(items)
    ]
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    ds = ray.data.from_items(rows, override_num_blocks=min(n, 4 * cpus))
    ds = ds.map_batches(_decode_batch, fn_kwargs={"spec": spec}, batch_size=1, num_cpus=1)
    compute = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    with warnings.catch_warnings():
        # `max_restarts` has no named parameter in Ray 2.60 (pinned), only the generic
        # remote-args path that now warns of its removal in 2.64.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map_batches(
            Embedder,
            fn_constructor_kwargs={"payload_ref": [payload_ref], "spec": spec, "outputs": outputs},
            batch_size=batch_size,
            concurrency=actors,
            # An evaluation is cheap to rerun; without restarts Ray need not keep the (large)
            # constructor arguments pinned for a restart, and does not warn about them.
            max_restarts=0,
            **compute,
        )
    bar = tqdm(total=n * W, desc=desc, unit="window", disable=not progress, leave=False)
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        for name in outputs:
            if arrays[name].shape[2] == 0:
                arrays[name] = np.zeros((n, W, batch[name].shape[1]), np.float32)
        for j, (idx, w, err) in enumerate(zip(batch["idx"], batch["window"], batch["error"])):
            if err:
                errors[items[idx].key] = str(err)
                continue
            valid[idx, w] = True
            for name in outputs:
                arrays[name][idx, w] = batch[name][j]
        bar.update(len(batch["idx"]))
    bar.close()
    del payload_ref
    return Embeddings([it.key for it in items], arrays, valid, errors)


__all__ = [
    "Embeddings",
    "MediaItem",
    "OUTPUTS",
    "WindowSpec",
    "build_from_payload",
    "decode_item",
    "extract_embeddings",
    "model_payload",
]
