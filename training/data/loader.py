"""The training data loader: shards on disk -> an endless stream of ready batches per rank.

Owns everything between the shard contract (`preprocessing.shard_format`, docs/shard-format.md)
and the trainer's batch dict; augmentation itself lives in `training.data.augment`. Data flow, in
the order of this file, all of it inside each DataLoader worker:

  shard list of a source --(split across ranks x workers, reshuffled every pass, forever)-->
  raw samples (member -> bytes) --(per-example weighted choice of the source)--> mixed stream
  --(shuffle buffer of raw bytes)--> temporal crop: decode only the needed frames (JPEG, or
  the window's H.264 stream in-process, cropped and resized in the decoder into 4:2:0 YUV
  planes by default), cut the matching int16 audio --(draw_clip_params, crop_resize_flip_u8
  for JPEG: uint8)--> one clip + its caption ids + its jitter/noise draws
  --(batched inside the worker)--> {video uint8 (or video_y, video_uv, flip), audio int16,
  jitter, noise_seed, text_ids, text_mask, audio_mask, source, keys, skipped, skipped_keys}
  --(in the training process, `finish_batch`: YUV -> RGB and flip, colour jitter, [-1, 1],
  audio pooling and noise, batched on the training device)--> the training batch.
Handing uint8 video and int16 audio across the process boundary costs a quarter / half of
float32 (4:2:0 planes: an eighth); the float work that dominated a CPU core's time per clip
runs batched on the device.

A corrupt sample is never fatal: it is skipped, and the next batch of the same worker carries
how many were skipped since its previous batch and one "key: reason" line for each.
A window shorter than the clip's span (possible for short inputs) is padded, not dropped:
its last frame repeats and the audio continues as zeros.
Everything random draws from generators seeded by (seed, start step, rank, worker), so a run
is reproducible and a resumed run (another start step) does not replay the same order.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from preprocessing import shard_format, storage
from preprocessing.config import PreprocessConfig
from preprocessing.vocab import encode_captions, load_tokenizer
from training.config_io import require_at_least
from training.data.augment import (
    AugmentConfig,
    augment_batch,
    crop_resize_flip_u8,
    draw_clip_params,
    yuv_to_rgb_u8,
)

SOURCES = ("howto100m", "audioset", "webvid")  # the batch's `source` is the index here
# Sources whose samples carry captions (AudioSet's have none).
TEXT_SOURCES = ("howto100m", "webvid")
# The rates `vatt preprocess` writes by default (10 fps, 48 kHz): used to validate the clip
# arithmetic before any worker starts; each sample's own json rates are what is used later.
SHARD_FPS = float(PreprocessConfig.__dataclass_fields__["fps"].default)
SHARD_SAMPLE_RATE = int(PreprocessConfig.__dataclass_fields__["sample_rate"].default)
# A worker that skips this many samples in a row is reading a corpus where nothing decodes:
# that is a configuration error, not a corrupt sample, so it stops instead of spinning.
MAX_CONSECUTIVE_SKIPS = 1000
HANDOFFS = ("yuv420", "yuv444", "rgb")  # data.video_handoff


# --- Where the shards are and how examples are drawn ---------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the shards are and how training examples are drawn from them.

    The clip's *shape* (frames, crop size, audio samples) comes from the model's tokenizer
    config; this section says how many seconds a clip spans, so frames and audio are
    subsampled to fit (e.g. the debug model's 8 frames over 3.2 s take every 4th frame at
    10 fps, and its 6400 audio samples average-pool 48 kHz audio by 24).
    """

    # Shard folders/files (as written by `vatt preprocess`); "" = that source is not used.
    howto100m: str = ""
    audioset: str = ""
    # WebVid-style shards (`vatt preprocess webvid`): one sample per clip, the caption as
    # text, no audio; the clip's frames are sampled sparsely (one per segment, ALPRO's).
    webvid: str = ""
    # Sampling weights of the two sources per example (spec: 50/50); renormalised over the
    # sources that are set.
    howto100m_weight: float = 0.5
    audioset_weight: float = 0.5
    webvid_weight: float = 0.5
    # tokenizer.json; "" = <howto100m>/tokenizer.json (written by `vatt preprocess howto100m`).
    tokenizer: str = ""
    clip_seconds: float = 3.2  # random temporal crop length (32 frames at 10 fps)
    num_captions: int = 5
    max_words: int = 16
    shuffle_buffer: int = 256  # samples held per loader worker for shuffling
    loader_workers: int = 2  # torch DataLoader worker processes per training worker
    # How an H.264 clip crosses to the training process (docs/shard-format.md): "yuv420" (the
    # stream's own 4:2:0 planes, cropped and resized in the decoder, half of RGB's bytes;
    # chroma keeps half the clip's resolution), "yuv444" (full-resolution chroma, RGB's
    # bytes), or "rgb" (converted in the decoder). The YUV ones are turned to RGB on the
    # training device; JPEG clips are RGB always. An odd clip size takes yuv444 for yuv420.
    video_handoff: str = "yuv420"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not (self.howto100m or self.audioset or self.webvid):
            raise ValueError(
                "data: set data.howto100m, data.audioset and/or data.webvid (shard folders)"
            )
        require_at_least(self, "data", ("howto100m_weight", "audioset_weight", "webvid_weight"), 0)
        if self.source_weights() == {}:
            raise ValueError("data: the weights of the sources that are set sum to 0")
        if self.clip_seconds <= 0:
            raise ValueError(f"data.clip_seconds={self.clip_seconds} must be > 0")
        require_at_least(self, "data", ("num_captions", "max_words", "shuffle_buffer"), 1)
        if self.loader_workers < 0:
            raise ValueError(f"data.loader_workers={self.loader_workers} must be >= 0")
        if self.video_handoff not in HANDOFFS:
            raise ValueError(
                f"data.video_handoff={self.video_handoff!r}: one of {', '.join(HANDOFFS)}"
            )

    def pix_fmt(self, height: int, width: int) -> str:
        """The decoder's output format for H.264 clips of height x width (`video_handoff`)."""
        if self.video_handoff == "yuv420" and (height % 2 or width % 2):
            return "yuv444p"  # 4:2:0 planes need an even size
        return {"yuv420": "yuv420p", "yuv444": "yuv444p", "rgb": "rgb24"}[self.video_handoff]

    def source_weights(self) -> dict[str, float]:
        """{source: probability} over the sources that are set and have weight > 0."""
        raw = {
            "howto100m": self.howto100m_weight if self.howto100m else 0.0,
            "audioset": self.audioset_weight if self.audioset else 0.0,
            "webvid": self.webvid_weight if self.webvid else 0.0,
        }
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items() if v > 0} if total > 0 else {}

    def tokenizer_path(self) -> str:
        if self.tokenizer:
            return self.tokenizer
        captions = self.howto100m or self.webvid
        if not captions:
            return ""  # AudioSet only: no text, the text tower gets padding
        if storage.is_uri(captions):
            return storage.join(captions, "tokenizer.json")
        return f"{captions.rstrip('/')}/tokenizer.json"


# --- What one clip looks like ------------------------------------------------------------------


@dataclass(frozen=True)
class ClipShape:
    """The model's trained input grid: frames x height x width video, audio_samples waveform."""

    frames: int
    height: int
    width: int
    audio_samples: int

    @classmethod
    def from_model(cls, model_cfg) -> ClipShape:
        """From a `training.model.ModelConfig` (its tokenizer section)."""
        tok = model_cfg.tokenizer
        return cls(tok.frames, tok.height, tok.width, tok.audio_samples)


def clip_strides(
    clip_seconds: float, shape: ClipShape, fps: float, sample_rate: int
) -> tuple[int, int]:
    """(frame stride, audio stride) that fit `shape` into `clip_seconds` of a shard window.

    Frames are subsampled (32 frames over 3.2 s at 10 fps: every frame; the debug model's 8:
    every 4th), so the stride is rounded. Audio is average-pooled by an integer factor, so
    clip_seconds * sample_rate must be a whole multiple of the model's audio_samples
    (153,600 -> 1; the debug model's 6400 -> 24); anything else is a ValueError.
    """
    frame_stride = round(clip_seconds * fps / shape.frames)
    if frame_stride < 1:
        raise ValueError(
            f"data.clip_seconds={clip_seconds} at {fps:g} fps holds "
            f"{clip_seconds * fps:g} frames, fewer than the model's {shape.frames}: "
            f"raise clip_seconds to at least {shape.frames / fps:g}"
        )
    ratio = clip_seconds * sample_rate / shape.audio_samples
    audio_stride = round(ratio)
    if audio_stride < 1 or abs(ratio - audio_stride) > 1e-6:
        raise ValueError(
            f"data.clip_seconds={clip_seconds} at {sample_rate} Hz is "
            f"{clip_seconds * sample_rate:g} samples, not a whole multiple of the model's "
            f"audio_samples={shape.audio_samples} (ratio {ratio:g}): audio is average-pooled "
            "by an integer factor, so pick clip_seconds = k * audio_samples / sample_rate"
        )
    return frame_stride, audio_stride


# --- Shards: which consumer reads what, forever --------------------------------------------
# A consumer is one DataLoader worker of one rank (rank * workers + worker).


class _ShardSplit:
    """WebDataset `nodesplitter` stage: this consumer's shard order for one pass.

    Called once per pass (the pipeline repeats forever), so each pass gets a new
    permutation. The permutation is seeded without rank or worker: every consumer computes
    the same one, which is what makes the split disjoint.
    With at least as many shards as consumers each takes every n-th shard of it; otherwise
    each reads all shards and `_every_nth` keeps its share of the samples.
    """

    def __init__(self, consumer: int, consumers: int, by_shard: bool, seed_words: list[int]):
        self.consumer, self.consumers, self.by_shard = consumer, consumers, by_shard
        self.seed_words, self.epoch = seed_words, -1

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        self.epoch += 1
        urls = [item["url"] for item in src]
        rng = np.random.default_rng(np.random.SeedSequence([*self.seed_words, self.epoch]))
        order = rng.permutation(len(urls))
        if self.by_shard:
            order = order[self.consumer :: self.consumers]
        for i in order:
            yield {"url": urls[i]}


def _every_nth(samples: Iterator[dict], consumer: int, consumers: int) -> Iterator[dict]:
    """Keep sample i of a pass when i % consumers == consumer (all consumers read the same
    sequence in this mode, so the shares are disjoint and cover the pass)."""
    for i, sample in enumerate(samples):
        if i % consumers == consumer:
            yield sample


class _SkipLog:
    """Corrupt samples seen by this worker since its last batch ("key: reason" lines)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.in_a_row = 0

    def add(self, key: str, exn: BaseException | str) -> None:
        reason = exn if isinstance(exn, str) else f"{type(exn).__name__}: {exn}"
        reason = " ".join(str(reason).split())[:200]  # one line, bounded
        self.lines.append(f"{key}: {reason}")
        self.in_a_row += 1
        if self.in_a_row >= MAX_CONSECUTIVE_SKIPS:
            raise RuntimeError(
                f"{self.in_a_row} samples in a row failed to load; last: {self.lines[-1]}"
            )

    def drain(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def _source_stream(
    shards: list[str],
    consumer: int,
    consumers: int,
    seed_words: list[int],
    log: _SkipLog,
) -> wds.DataPipeline:
    """Raw samples of one source for this consumer, repeated forever. Shards are read by the
    contract's guarded reader (sizes checked before anything is allocated, a repeated key or
    a compressed stream refused); every problem it finds is logged and reading goes on."""
    by_shard = len(shards) >= consumers
    stream = wds.DataPipeline(
        wds.SimpleShardList(shards),
        # Shuffling and splitting are both `_ShardSplit`'s job (one seeded permutation per pass).
        _ShardSplit(consumer, consumers, by_shard, seed_words),
        functools.partial(shard_format.read_shards, on_problem=log.add),
    )
    if not by_shard:
        stream = stream.compose(
            functools.partial(_every_nth, consumer=consumer, consumers=consumers)
        )
    return stream.repeat()  # training runs by steps: no epoch end, every rank yields forever


# --- Mixing the sources --------------------------------------------------------------------


def _mix(
    streams: list[Iterator[dict]], names: list[str], probs: list[float], rng: np.random.Generator
) -> Iterator[dict]:
    """Per example, draw a source with `probs` and take its next raw sample (tagged with it)."""
    while True:
        i = int(rng.choice(len(streams), p=probs))
        try:
            sample = next(streams[i])
        except StopIteration:
            raise RuntimeError(
                f"source {names[i]} gave this loader worker no sample in a whole pass over its "
                "shards: every sample failed, or there are fewer samples than ranks x "
                "data.loader_workers"
            ) from None
        sample["__source__"] = names[i]
        yield sample


# --- One raw sample -> one clip ------------------------------------------------------------


class _ClipMaker:
    """Temporal crop, decode, uint8 crop/resize/flip, the audio span and the caption ids of one
    sample; the clip's jitter factors and noise seed ride along for the device half
    (`augment.augment_batch`)."""

    def __init__(self, data: DataConfig, shape: ClipShape, gen: torch.Generator):
        self.data, self.shape, self.gen = data, shape, gen
        tok_path = data.tokenizer_path()
        self.tokenizer = load_tokenizer(tok_path) if tok_path else None
        self._strides: dict[tuple[float, int], tuple[int, int]] = {}
        self.pix_fmt = data.pix_fmt(shape.height, shape.width)  # for H.264 members

    def strides(self, fps: float, sample_rate: int) -> tuple[int, int]:
        key = (fps, sample_rate)
        if key not in self._strides:
            self._strides[key] = clip_strides(self.data.clip_seconds, self.shape, fps, sample_rate)
        return self._strides[key]

    def __call__(self, raw: dict) -> dict:
        if shard_format.META_MEMBER not in raw:
            raise ValueError(f"missing member .{shard_format.META_MEMBER}")
        meta = shard_format.parse_meta(raw[shard_format.META_MEMBER])  # types checked
        missing = [f".{m}" for m in shard_format.members(meta) if m not in raw]
        if missing:
            raise ValueError(f"missing member {', '.join(missing)}")
        fps, sample_rate = float(meta["fps"]), int(meta["sample_rate"])
        n = meta["num_frames"]
        # A WebVid sample stores a few frames over its whole clip (fps ~1): its frames are
        # sampled sparsely below, and only the audio stride comes from the clip arithmetic.
        sparse = raw["__source__"] == "webvid"
        frame_stride, audio_stride = self.strides(SHARD_FPS if sparse else fps, sample_rate)
        T = self.shape.frames

        if sparse:
            # Sparse sampling over the whole clip: T segments, a random frame of each.
            start = 0
            seed = int(torch.randint(0, 2**62, (), generator=self.gen))
            frames = shard_format.sparse_frame_indices(n, T, np.random.default_rng(seed))
        else:
            # Random temporal crop: a span of T * stride frames that fits in the window.
            span = T * frame_stride
            start = int(torch.randint(0, max(0, n - span) + 1, (), generator=self.gen))
            frames = slice(start, min(n, start + span), frame_stride)
        # Every draw of the clip, then the decode: an H.264 member is cropped and resized
        # inside the decoder (uint8 out, YUV planes by default, whose flip waits for the RGB
        # conversion on the device: a mirrored 4:2:0 plane would move chroma half a pixel);
        # JPEG frames come whole and are cut here.
        params = draw_clip_params(meta["height"], meta["width"], self.data.augment, self.gen)
        # The audio under the same span: start at the first frame's time; compressed audio is
        # decoded only as far as the span's end.
        need = self.shape.audio_samples * audio_stride
        a0 = round(start * sample_rate / fps)
        yuv = self.pix_fmt != "rgb24"
        decoded = shard_format.decode_sample(
            {**raw, shard_format.META_MEMBER: meta}, frames,
            crop=params.box, out_size=(self.shape.height, self.shape.width),
            flip=params.flip and not yuv, audio_until=a0 + need, pix_fmt=self.pix_fmt,
        )  # fmt: skip
        video = decoded["video"]
        if isinstance(video, shard_format.YuvPlanes):  # Y [t, H, W], CbCr [t, 2, h, w]
            clip_video = {
                "video_y": torch.from_numpy(_hold_last(video.y, T)),
                "video_uv": torch.from_numpy(_hold_last(video.uv, T)),
                "flip": params.flip,
            }
        else:  # uint8 [t <= T, H0, W0, 3] (or already [t, H, W, 3])
            if video.ndim != 4 or video.shape[0] == 0 or video.shape[-1] != 3:
                raise ValueError(f"decoded video has shape {video.shape}")
            video = _hold_last(video, T)
            if decoded["cropped"]:
                video_t = torch.from_numpy(video)
                if params.flip and not decoded["flipped"]:
                    video_t = video_t.flip(2)  # width axis of [T, H, W, 3]
                video_t = video_t.contiguous()
            else:
                video_t = crop_resize_flip_u8(video, params, self.shape.height, self.shape.width)
            clip_video = {"video": video_t}  # uint8 [T, H, W, 3]

        # int16 until the device (pooling and noise happen there).
        audio = decoded["audio"]
        if audio.ndim != 1 or audio.dtype != np.int16:
            raise ValueError(f"audio is {audio.dtype} {audio.shape}, expected int16 [S]")
        wave = np.zeros(need, np.int16)  # window shorter than the clip: silence after its end
        part = audio[a0 : a0 + need]
        wave[: len(part)] = part

        source = raw["__source__"]
        K, L = self.data.num_captions, self.data.max_words
        text_ids = np.zeros((K, L), dtype=np.int64)
        text_mask = np.zeros(K, dtype=np.float32)
        if source in TEXT_SOURCES and self.tokenizer is not None:
            texts = [str(c["text"]) for c in meta["captions"]]
            text_ids = encode_captions(self.tokenizer, texts, K, L)
            if meta["text_mask"]:
                # A caption counts when it exists and has a word (an empty row is pure padding).
                text_mask = (text_ids != 0).any(axis=1).astype(np.float32)
        return {
            **clip_video,
            "audio": torch.from_numpy(wave),  # int16 [S * audio_stride]
            "jitter": torch.tensor(params.jitter, dtype=torch.float32),
            "noise_seed": params.noise_seed,
            "audio_stride": audio_stride,
            "text_ids": torch.from_numpy(text_ids),
            "text_mask": torch.from_numpy(text_mask),
            "audio_mask": float(meta["audio_mask"]),
            "source": SOURCES.index(source),
            "key": raw["__key__"],
        }


def _hold_last(frames: np.ndarray, T: int) -> np.ndarray:
    """A window shorter than the clip: repeat its last frame up to T (frames on axis 0)."""
    if frames.shape[0] == 0:
        raise ValueError("decoded video has no frames")
    if frames.shape[0] >= T:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], T - frames.shape[0], axis=0)])


def _to_clips(samples: Iterator[dict], make: _ClipMaker, log: _SkipLog) -> Iterator[dict]:
    for raw in samples:
        try:
            clip = make(raw)
        except Exception as exn:  # any corrupt member: skip, count, report, go on
            log.add(raw.get("__key__", "?"), exn)
            continue
        log.in_a_row = 0
        yield clip


# --- Clips -> batch (inside the worker) ----------------------------------------------------


def _batch_video(clips: list[dict]) -> dict:
    """The clips' video as one batch: YUV planes when every clip has them (converted on the
    training device), else RGB, a YUV clip converted here (a batch mixing JPEG and H.264
    shards)."""
    if all("video_y" in c for c in clips):
        return {
            "video_y": torch.stack([c["video_y"] for c in clips]),  # uint8 [B, T, H, W]
            "video_uv": torch.stack([c["video_uv"] for c in clips]),  # uint8 [B, T, 2, h, w]
            "flip": torch.tensor([c["flip"] for c in clips], dtype=torch.bool),  # [B]
        }
    rgb = [
        c["video"] if "video" in c else yuv_to_rgb_u8(c["video_y"], c["video_uv"], c["flip"])
        for c in clips
    ]
    return {"video": torch.stack(rgb)}  # uint8 [B, T, H, W, 3]


def _collate(clips: list[dict], log: _SkipLog) -> dict:
    skipped_keys = log.drain()
    return {
        **_batch_video(clips),
        "audio": torch.stack([c["audio"] for c in clips]),  # int16 [B, S * audio_stride]
        "jitter": torch.stack([c["jitter"] for c in clips]),  # float32 [B, 4]
        "noise_seed": torch.tensor([c["noise_seed"] for c in clips], dtype=torch.int64),
        "audio_stride": clips[0]["audio_stride"],
        "text_ids": torch.stack([c["text_ids"] for c in clips]),  # int64 [B, K, L]
        "text_mask": torch.stack([c["text_mask"] for c in clips]),  # float32 [B, K]
        "audio_mask": torch.tensor([c["audio_mask"] for c in clips], dtype=torch.float32),
        "source": torch.tensor([c["source"] for c in clips], dtype=torch.int64),  # [B]
        "keys": [c["key"] for c in clips],
        "skipped": len(skipped_keys),
        "skipped_keys": skipped_keys,
    }


class ClipStream(IterableDataset):
    """Endless batches for one rank; each DataLoader worker builds its own pipeline."""

    def __init__(
        self,
        data: DataConfig,
        shape: ClipShape,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start_step: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"batch_size={batch_size}, rank={rank}, world_size={world_size}")
        clip_strides(data.clip_seconds, shape, SHARD_FPS, SHARD_SAMPLE_RATE)  # fail early
        self.data, self.shape, self.batch_size = data, shape, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.start_step = seed, start_step
        weights = data.source_weights()
        self.names = [s for s in SOURCES if s in weights]
        self.probs = [weights[s] for s in self.names]
        self.shards = {s: shard_format.list_shards(getattr(data, s)) for s in self.names}
        for s, found in self.shards.items():
            if not found:
                raise ValueError(f"data.{s}={getattr(data, s)!r}: no *.tar shards there")
        tok = data.tokenizer_path()
        if (
            tok
            and any(s in self.names for s in TEXT_SOURCES)
            and not (storage.exists(tok) if storage.is_uri(tok) else Path(tok).exists())
        ):
            raise ValueError(f"tokenizer {tok!r} does not exist (set data.tokenizer)")
        self._iterations = 0  # a second iter() on the same workers gets fresh seeds

    def _seed_words(self, *more: int) -> list[int]:
        return [self.seed % 2**63, self.start_step, self._iterations, *more]

    def __iter__(self) -> Iterator[dict]:
        self._iterations += 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        consumer, consumers = self.rank * workers + worker, self.world_size * workers
        log = _SkipLog()
        streams = [
            iter(_source_stream(self.shards[s], consumer, consumers, self._seed_words(i), log))
            for i, s in enumerate(self.names)
        ]
        # Per-consumer randomness: source choice, shuffle buffer, crops/augmentation.
        mix_ss, shuffle_ss, aug_ss = np.random.SeedSequence(
            self._seed_words(self.rank, worker)
        ).spawn(3)
        gen = torch.Generator().manual_seed(int(aug_ss.generate_state(1, np.uint64)[0] >> 1))
        bufsize = self.data.shuffle_buffer
        pipeline = wds.DataPipeline(
            functools.partial(_mix, streams, self.names, self.probs, np.random.default_rng(mix_ss)),
            # Shuffles raw bytes (~0.45 MB a window), not decoded float clips (~19 MB at 32x224).
            wds.shuffle(bufsize, bufsize, rng=random.Random(int(shuffle_ss.generate_state(1)[0]))),
            functools.partial(_to_clips, make=_ClipMaker(self.data, self.shape, gen), log=log),
            wds.batched(
                self.batch_size, collation_fn=functools.partial(_collate, log=log), partial=False
            ),
        )
        return iter(pipeline)


def build_loader(
    data: DataConfig, shape: ClipShape, *, pin_memory: bool | None = None, **stream: int
) -> DataLoader:
    """An endless DataLoader of compact batch dicts for one rank, made training-ready on the
    training device by `finish_batch`. `stream` is `ClipStream`'s keyword arguments
    (batch_size, rank, world_size, seed, start_step), passed on as they are:

      video uint8 [B, T, H, W, 3] (cropped, resized, flipped), or, when every clip of the
        batch came from H.264 and data.video_handoff is yuv420 / yuv444, instead:
        video_y uint8 [B, T, H, W], video_uv uint8 [B, T, 2, H/2, W/2] (or [.., H, W]),
        flip bool [B] (to mirror after the RGB conversion)
      audio int16 [B, S * audio_stride]          audio_stride int
      jitter float32 [B, 4], noise_seed int64 [B] (each clip's draws for the device half)
      text_ids int64 [B, K, L] (0 = padding)     text_mask float32 [B, K] (1 = real caption)
      audio_mask float32 [B]                     source int64 [B] (index into SOURCES)
      keys list[str]                             skipped int, skipped_keys list[str]

    with (T, H, W, S) from `shape`, K = data.num_captions, L = data.max_words. `skipped`
    counts the corrupt samples the producing worker dropped since its previous batch.
    Batches are assembled in the workers (batch_size=None here), so the main process only
    receives ready tensors. pin_memory=None pins when CUDA is visible to this process (Ray
    hides GPUs from CPU-only workers). Iterate it once: a fresh iter() restarts the stream
    with new seeds.
    """
    dataset = ClipStream(data, shape, **stream)
    workers = data.loader_workers
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )


def finish_batch(batch: dict, augment: AugmentConfig, device=None) -> dict:
    """A loader batch -> the training batch, on `device` (default: where the batch is): the
    colour jitter, [-1, 1] scaling and audio noise batched there (`augment.augment_batch`).

      video float32 [B, T, H, W, 3] in [-1, 1]   audio float32 [B, S] in [-1, 1]

    YUV planes (video_y, video_uv, flip) are converted to RGB there first and replaced by
    `video`. The other keys are passed through. A batch that is already finished is returned
    as is."""
    rest = {k: v for k, v in batch.items() if k not in ("video_y", "video_uv", "flip")}
    if "video_y" in batch:
        video, flip = (batch["video_y"], batch["video_uv"]), batch["flip"]
    elif batch["video"].dtype != torch.uint8:
        return batch
    else:
        video, flip = batch["video"], None
    audio = batch["audio"]
    if device is not None:
        move = functools.partial(torch.Tensor.to, device=device, non_blocking=True)
        video = tuple(map(move, video)) if isinstance(video, tuple) else move(video)
        audio = move(audio)
    video, audio = augment_batch(
        video, audio, batch["jitter"], batch["noise_seed"], augment, batch["audio_stride"], flip
    )
    return {**rest, "video": video, "audio": audio}


__all__ = [
    "SOURCES",
    "TEXT_SOURCES",
    "ClipShape",
    "ClipStream",
    "DataConfig",
    "build_loader",
    "clip_strides",
    "finish_batch",
]
