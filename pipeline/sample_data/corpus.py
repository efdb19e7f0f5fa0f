"""Built-in sample corpus: synthetic HowTo100M / AudioSet / MSR-VTT look-alikes in their real file formats.

Every video has a latent topic that decides what is seen (background colour, a moving shape),
heard (a tone or noise family) and said (espeak-ng speech of captions drawn from the topic's
words), so a model trained on it can learn to match text, audio and video by topic.
Real encoders only (ffmpeg lavfi sources, libx264 + AAC, espeak-ng); the same seed gives the
same captions, CSVs and ground truth.

Output layout under OUT (file-naming rule in `audioset_file_name`):
    howto100m/videos/<video_id>.mp4          video_id: 11 chars of [A-Za-z0-9_-] (YouTube-like)
    howto100m/caption.json                   {video_id: {"start": [s], "end": [s], "text": [str]}}
    audioset/videos/<YTID>_<start>_<end>.mp4 e.g. -0RWZT-miFs_420.000_430.000.mp4 (10 s, no speech)
    audioset/segments.csv                    three '#' header lines, then `YTID, start, end, "mids"`
    audioset/class_labels_indices.csv        index,mid,display_name
    msrvtt/videos/video<N>.mp4               held-out retrieval test videos (10-15 s)
    msrvtt/msrvtt_test.csv                   key,vid_key,video_id,sentence
    ucf101/videos/<Class>/v_<Class>_g<GG>_c<CC>.avi   action clips (XviD AVI, 320x240, 4-7 s;
                                             each group has its own lighting/colour balance);
                                             class = topic name in CamelCase
    ucf101/splits/classInd.txt, trainlist0<s>.txt, testlist0<s>.txt   UCF101 split files
    esc50/audio/<fold>-<src>-<take>-<target>.wav      5 s 44.1 kHz mono sound of the topic
    esc50/meta/esc50.csv                     filename,fold,target,category,esc10,src_file,take
    youcook2/videos/<video_id>.mp4           2-3 segments of different topics back to back
    youcook2/youcookii_val.csv               end,start,task,text,video_id (one row per segment)
    kinetics/videos/<split>/<label>/<YTID>_<start>_<end>.mp4   Kinetics-style 10 s clips
                                             (start/end as %06d), split = train | val
    kinetics/annotations/train.csv, validate.csv   label,youtube_id,time_start,time_end,split
    webvid/videos/<page_dir>/<videoid>.mp4   WebVid-style silent 4-6 s clips, 448x252: one topic,
                                             or two side by side (left half / right half)
    webvid/results_train.csv, results_val.csv   videoid,contentUrl,duration,page_dir,name
    topics.json                              topics, the topic of every file, seed, version
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

GENERATOR = "vatt-sample-corpus"
# Bump when the same seed would produce different content (captions, ids, topics).
GENERATOR_VERSION = "4"

# A training window is 32 frames at 10 fps (spec §1); used only to report expected windows.
WINDOW_S = 3.2

RESOLUTIONS: tuple[tuple[int, int], ...] = ((320, 240), (426, 240), (360, 360), (240, 320))
FRAME_RATES: tuple[int, ...] = (24, 25, 30)
AUDIO_RATE = 44100  # YouTube's usual AAC rate: decoders must resample to 48 kHz themselves.
ESPEAK_RATE = 22050  # espeak-ng always writes 22.05 kHz mono int16.
ESPEAK_VOICES = ("en-us", "en-gb", "en-us+f3", "en+m3")
SEGMENTS_CREATED_LINE = "# Segments csv created Sun Mar  5 10:54:31 2017"
SEGMENTS_COLUMNS_LINE = "# YTID, start_seconds, end_seconds, positive_labels"
MSRVTT_HEADER = ("key", "vid_key", "video_id", "sentence")
# Real MSR-VTT test videos are video7010-video9999.
_MSRVTT_NUMBERS = range(7010, 10000)
_MSRVTT_MAX_VIDEOS = len(_MSRVTT_NUMBERS)
# Every UCF101 clip is 320x240 at 25 fps, XviD in AVI.
UCF101_SIZE = (320, 240)
UCF101_FPS = 25
# UCF101 has 25 groups per class and 3 splits; split s tests on the s-th block of 7 groups
# (groups 1-7, 8-14, 15-21), so we test on the same fraction of our groups.
UCF101_SPLITS = 3
_UCF101_TEST_FRACTION = 7 / 25
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = 5
YOUCOOK2_COLUMNS = ("end", "start", "task", "text", "video_id")
# YouCook2 recipe types are 3-digit ids (101 ... 426); one per video.
_YOUCOOK2_TASKS = range(101, 427)
# A YouTube id is 64 bits in 11 base64 chars: the last char holds 4 bits, so it is one of 16.
_YT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_YT_LAST = "AEIMQUYcgkosw048"

# The topic table is data (topics.yaml beside this file): what every topic shows, sounds like
# and says, the overlay motions and sound sources it names, and the words without a topic.
TOPICS_FILE = Path(__file__).with_name("topics.yaml")


@dataclass(frozen=True)
class Topic:
    """One latent topic: what a video of it shows, sounds like and says."""

    name: str
    activity: str  # used in MSR-VTT sentences: "a person is <activity> ..."
    words: tuple[str, ...]
    colour: str  # background, 0xRRGGBB
    shape_colour: str
    shape: tuple[float, float]  # shape width, height as fractions of min(W, H)
    motion: str  # key of _MOTIONS
    speed: float  # screen fractions (or turns / blinks) per second
    sound: str  # key of _SOUNDS
    frequency: float  # Hz for tones; ignored for noise
    level: float  # AudioSet amplitude, chosen so webrtcvad(2) mostly says "no speech"
    mid: str  # AudioSet-style label id of the topic's sound


def _load_topic_table(path: Path = TOPICS_FILE) -> dict:
    import yaml

    table = yaml.safe_load(path.read_text())
    table["topics"] = tuple(
        Topic(**{**t, "words": tuple(t["words"]), "shape": tuple(t["shape"])})
        for t in table["topics"]
    )
    return table


_TABLE = _load_topic_table()
# Words that carry no topic, so a caption is not just a bag of topic words.
FILLER_WORDS: tuple[str, ...] = tuple(_TABLE["filler_words"])
TOPICS: tuple[Topic, ...] = _TABLE["topics"]
_MOTIONS: dict[str, tuple[str, str, str]] = {k: tuple(v) for k, v in _TABLE["motions"].items()}
_SOUNDS: dict[str, tuple[str, str]] = {k: tuple(v) for k, v in _TABLE["sounds"].items()}
# AudioSet-style family labels: each clip gets its topic's MID plus its sound family's MID.
SOUND_FAMILY_LABELS: dict[str, tuple[str, str]] = {
    k: (v["mid"], v["name"]) for k, v in _TABLE["sound_family_labels"].items()
}
_SOUND_FAMILY: dict[str, str] = dict(_TABLE["sound_families"])


class SampleCorpusError(RuntimeError):
    """An encoder is missing or failed while writing the corpus (the message names it)."""


@dataclass(frozen=True)
class SampleCorpusConfig:
    """What to generate. Defaults give a few hundred caption windows in well under 2 min on 2 cores."""

    videos: int = 24  # HowTo100M-style videos (3 per topic with 8 topics)
    audioset_clips: int = 16  # 10 s sound-only clips, 2 per topic
    msrvtt_videos: int = 16  # held-out retrieval test videos, 2 per topic
    seed: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # never changes content
    num_topics: int = len(TOPICS)
    min_video_s: int = 20  # whole seconds, so every frame rate gives a whole number of frames
    max_video_s: int = 90
    msrvtt_min_s: int = 10
    msrvtt_max_s: int = 15
    audioset_clip_s: int = 10  # AudioSet segments are 10 s
    # Labelled evaluation sets (topic = class). UCF101: groups per class (test groups are
    # disjoint from training groups, as in UCF101), clips per group; 0 groups = none.
    ucf101_groups: int = 3
    ucf101_clips_per_group: int = 1
    ucf101_min_s: int = 4
    ucf101_max_s: int = 7
    esc50_clips_per_class: int = 5  # spread over the 5 folds; ESC-50 has 40
    esc50_clip_s: int = 5  # every ESC-50 clip is 5 s
    youcook2_videos: int = 4
    youcook2_min_segments: int = 2  # each of a different topic
    youcook2_max_segments: int = 3
    youcook2_segment_min_s: int = 5  # > one 3.2 s window, so every segment holds a clip
    youcook2_segment_max_s: int = 8
    caption_every_min_s: float = 2.5  # HowTo100M ASR lines start every few seconds
    caption_every_max_s: float = 5.0
    caption_min_words: int = 3
    caption_max_words: int = 8
    speech_background_ratio: float = 0.5  # background level under speech, x topic level
    # Kinetics-style set (label = topic name): clips per class, a quarter of them (at least
    # one) in the validation CSV; 0 = none. Real Kinetics clips are 10 s cuts of a video.
    kinetics_clips_per_class: int = 4
    kinetics_clip_s: int = 10
    # WebVid-style video-text set (ALPRO): silent clips with one descriptive caption each.
    # Single-topic clips, and two-topic clips (left half one topic, right half another,
    # the caption names both) so region-level alignment can be measured; a quarter of each
    # (at least one of 2 or more) in the val CSV.
    webvid_clips: int = 32
    webvid_pairs: int = 24
    webvid_min_s: int = 4
    webvid_max_s: int = 6

    def __post_init__(self) -> None:
        for name in (
            "videos",
            "audioset_clips",
            "msrvtt_videos",
            "ucf101_groups",
            "esc50_clips_per_class",
            "youcook2_videos",
            "webvid_clips",
            "webvid_pairs",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.msrvtt_videos > _MSRVTT_MAX_VIDEOS:
            raise ValueError(
                f"msrvtt_videos must be <= {_MSRVTT_MAX_VIDEOS} (ids video7010-video9999), "
                f"got {self.msrvtt_videos}"
            )
        if self.total_items == 0:
            raise ValueError("nothing to generate: every count (videos, audioset_clips, ...) is 0")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 1 <= self.num_topics <= len(TOPICS):
            raise ValueError(f"num_topics must be in 1..{len(TOPICS)}, got {self.num_topics}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        # A video must hold at least one caption slot plus margins.
        for lo, hi in (("min_video_s", "max_video_s"), ("msrvtt_min_s", "msrvtt_max_s")):
            if not 5 <= getattr(self, lo) <= getattr(self, hi):
                raise ValueError(
                    f"need 5 <= {lo} <= {hi}, got {getattr(self, lo)}, {getattr(self, hi)}"
                )
        if self.audioset_clip_s < 1:
            raise ValueError(f"audioset_clip_s must be >= 1, got {self.audioset_clip_s}")
        if not 1.0 <= self.caption_every_min_s <= self.caption_every_max_s:
            raise ValueError("need 1.0 <= caption_every_min_s <= caption_every_max_s")
        if not 1 <= self.caption_min_words <= self.caption_max_words <= 16:
            raise ValueError(
                "need 1 <= caption_min_words <= caption_max_words <= 16 (spec: 16 words)"
            )
        if not 0.0 <= self.speech_background_ratio <= 1.0:
            raise ValueError("speech_background_ratio must be in [0, 1]")
        if self.ucf101_groups == 1:
            raise ValueError("ucf101_groups must be 0 or >= 2 (test groups + training groups)")
        if self.ucf101_clips_per_group < 1:
            raise ValueError(
                f"ucf101_clips_per_group must be >= 1, got {self.ucf101_clips_per_group}"
            )
        if not 1 <= self.ucf101_min_s <= self.ucf101_max_s:
            raise ValueError("need 1 <= ucf101_min_s <= ucf101_max_s")
        if self.esc50_clip_s < 1:
            raise ValueError(f"esc50_clip_s must be >= 1, got {self.esc50_clip_s}")
        if not 1 <= self.youcook2_min_segments <= self.youcook2_max_segments:
            raise ValueError("need 1 <= youcook2_min_segments <= youcook2_max_segments")
        if self.youcook2_videos and self.youcook2_max_segments > self.num_topics:
            raise ValueError(
                f"youcook2_max_segments={self.youcook2_max_segments} segments of different "
                f"topics need as many topics (num_topics={self.num_topics})"
            )
        if not 1 <= self.youcook2_segment_min_s <= self.youcook2_segment_max_s:
            raise ValueError("need 1 <= youcook2_segment_min_s <= youcook2_segment_max_s")
        _validate_kinetics(self)
        if not 1 <= self.webvid_min_s <= self.webvid_max_s:
            raise ValueError("need 1 <= webvid_min_s <= webvid_max_s")
        if self.webvid_pairs and self.num_topics < 2:
            raise ValueError(f"webvid_pairs need num_topics >= 2, got {self.num_topics}")

    @property
    def ucf101_clips(self) -> int:
        return self.num_topics * self.ucf101_groups * self.ucf101_clips_per_group

    @property
    def esc50_clips(self) -> int:
        return self.num_topics * self.esc50_clips_per_class

    @property
    def kinetics_clips(self) -> int:
        return self.num_topics * self.kinetics_clips_per_class

    @property
    def total_items(self) -> int:
        return (
            self.videos
            + self.audioset_clips
            + self.msrvtt_videos
            + self.ucf101_clips
            + self.esc50_clips
            + self.youcook2_videos
            + self.kinetics_clips
            + self.webvid_clips
            + self.webvid_pairs
        )

    def content_dict(self) -> dict:
        """Every field that affects the output (not `workers`), for topics.json."""
        d = asdict(self)
        d.pop("workers")
        return d


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one file; made up front from the seed, rendered in a thread."""

    kind: str  # "howto100m" | "audioset" | "msrvtt" | "ucf101" | "esc50" | "youcook2"
    name: str  # the file's stem: video_id, AudioSet stem, "video<N>", "v_<Class>_g01_c01", ...
    rel_path: str  # relative to OUT
    topic: int  # the first segment's topic for youcook2
    width: int  # 0 for sound-only files (esc50)
    height: int
    fps: int
    duration_s: int
    rng_seed: str  # seeds the per-clip jitter and the captions
    speech: bool
    # youcook2: (topic, seconds) of each segment, played back to back; () = one topic throughout
    segments: tuple[tuple[int, int], ...] = ()
    task: int = 0  # youcook2 recipe id
    # webvid: the right half's topic (`topic` is the left half's); -1 = one topic throughout
    right_topic: int = -1
    split: str = ""  # webvid: "train" | "val"
    page_dir: str = ""  # webvid: the folder of the file (WebVid's page_dir)


@dataclass(frozen=True)
class Captions:
    """HowTo100M caption.json value of one video (times in seconds)."""

    start: list[float]
    end: list[float]
    text: list[str]


@dataclass(frozen=True)
class SampleCorpusSummary:
    """What was written, for the CLI's report."""

    out_dir: Path
    howto_videos: int
    captions: int
    audioset_clips: int
    msrvtt_videos: int
    video_seconds: float
    total_bytes: int
    seconds: float
    ucf101_clips: int = 0
    esc50_clips: int = 0
    youcook2_videos: int = 0
    youcook2_segments: int = 0
    kinetics_clips: int = 0
    webvid_clips: int = 0
    webvid_pairs: int = 0
    reused: bool = False  # an existing finished corpus was kept (--reuse)


# ---------------------------------------------------------------------------------------------
# Planning (pure: seed -> plans, ids, captions' words)
# ---------------------------------------------------------------------------------------------


def make_youtube_id(rng: random.Random) -> str:
    """An 11-character id that looks like a YouTube video id."""
    return "".join(rng.choice(_YT_ALPHABET) for _ in range(10)) + rng.choice(_YT_LAST)


def audioset_file_name(ytid: str, start_s: float, end_s: float, ext: str = "mp4") -> str:
    """`<YTID>_<start>_<end>.<ext>` with the 3-decimal numbers of segments.csv.

    YTIDs may themselves contain '_' and start with '-': split a stem with `rsplit("_", 2)`.
    """
    return f"{ytid}_{start_s:.3f}_{end_s:.3f}.{ext}"


def _balanced_topics(n: int, num_topics: int, rng: random.Random) -> list[int]:
    # Round-robin then shuffle: every topic appears n/num_topics times (+-1), in random order.
    topics = [i % num_topics for i in range(n)]
    rng.shuffle(topics)
    return topics


def _unique_ids(n: int, rng: random.Random, taken: set[str]) -> list[str]:
    ids = []
    while len(ids) < n:
        vid = make_youtube_id(rng)
        if vid not in taken:
            taken.add(vid)
            ids.append(vid)
    return ids


def ucf101_class_name(topic: Topic) -> str:
    """UCF101-style CamelCase class name: "car repair" -> "CarRepair"."""
    return "".join(word.capitalize() for word in topic.name.split())


def esc50_category(topic: Topic) -> str:
    """ESC-50-style category: lower case, '_' between words ("car repair" -> "car_repair")."""
    return topic.name.replace(" ", "_")


def ucf101_test_groups(groups: int, split: int) -> range | None:
    """The (1-based) test groups of UCF101 split `split` when each class has `groups` groups,
    or None when that split does not exist (too few groups for a disjoint block).

    As in UCF101 (25 groups: split 1 tests on groups 1-7, split 2 on 8-14, split 3 on 15-21),
    split s tests on the s-th block of round(groups * 7 / 25) groups and trains on the rest."""
    size = max(1, round(groups * _UCF101_TEST_FRACTION))
    first = (split - 1) * size + 1
    if groups - size < 1 or first + size - 1 > groups:
        return None
    return range(first, first + size)


def ucf101_recording_filter(seed: int, name: str) -> str:
    """The ffmpeg filters of a UCF101-style clip's group: its "recording conditions".

    In UCF101 a group is one actor and setting, and test groups are disjoint from training
    groups, so a probe must generalise across conditions. Here every group gets its own
    lighting and colour balance (contrast, brightness, saturation, hue), within the colour
    jitter that pretraining augments with (training.data.augment.AugmentConfig): a pretrained
    tower has learnt to see the topic through them, an untrained one has not."""
    group = name.rsplit("_g", 1)[1][:2]  # v_<Class>_g<GG>_c<CC>
    rng = random.Random(f"{seed}/ucf101/conditions/g{group}")
    contrast, brightness = rng.uniform(0.6, 1.4), rng.uniform(-0.15, 0.15)
    saturation, hue_degrees = rng.uniform(0.6, 1.4), rng.uniform(-18.0, 18.0)
    return (
        f",eq=contrast={contrast:.3f}:brightness={brightness:.3f}:saturation={saturation:.3f}"
        f",hue=h={hue_degrees:.1f}"
    )


def ucf101_splits(groups: int) -> list[int]:
    """The split numbers (1..3) that exist for `groups` groups per class."""
    return [s for s in range(1, UCF101_SPLITS + 1) if ucf101_test_groups(groups, s)]


def _labelled_plans(
    config: SampleCorpusConfig, id_rng: random.Random, taken: set[str]
) -> list[ClipPlan]:
    """UCF101-, ESC-50- and YouCook2-style files: the topic is the class (or segment) label."""
    seed, plans = config.seed, []
    rng = random.Random(f"{seed}/ucf101")
    w, h = UCF101_SIZE
    for t in range(config.num_topics):
        cls = ucf101_class_name(TOPICS[t])
        for g in range(1, config.ucf101_groups + 1):
            for c in range(1, config.ucf101_clips_per_group + 1):
                name = f"v_{cls}_g{g:02d}_c{c:02d}"
                duration = rng.randint(config.ucf101_min_s, config.ucf101_max_s)
                plans.append(
                    ClipPlan(
                        "ucf101",
                        name,
                        f"ucf101/videos/{cls}/{name}.avi",
                        t,
                        w,
                        h,
                        UCF101_FPS,
                        duration,
                        f"{seed}/ucf101/{name}",
                        speech=False,
                    )  # fmt: skip
                )
    rng = random.Random(f"{seed}/esc50")
    # Freesound ids: unique per clip (real ESC-50 cuts several takes A, B, ... from one).
    sources = rng.sample(range(10000, 300000), config.esc50_clips)
    for t in range(config.num_topics):
        first_fold = rng.randrange(ESC50_FOLDS)  # folds hold a class's clips evenly (+-1)
        for j in range(config.esc50_clips_per_class):
            fold = (first_fold + j) % ESC50_FOLDS + 1
            name = f"{fold}-{sources.pop()}-A-{t}"
            plans.append(
                ClipPlan(
                    "esc50",
                    name,
                    f"esc50/audio/{name}.wav",
                    t,
                    0,
                    0,
                    0,
                    config.esc50_clip_s,
                    f"{seed}/esc50/{name}",
                    speech=False,
                )  # fmt: skip
            )
    rng = random.Random(f"{seed}/youcook2")
    for i, video_id in enumerate(_unique_ids(config.youcook2_videos, id_rng, taken)):
        n = rng.randint(config.youcook2_min_segments, config.youcook2_max_segments)
        topics = rng.sample(range(config.num_topics), n)  # different topics, so a segment's
        # clips must come from inside its [start, end] to match its text
        seconds = [
            rng.randint(config.youcook2_segment_min_s, config.youcook2_segment_max_s)
            for _ in topics
        ]
        w, h = RESOLUTIONS[i % len(RESOLUTIONS)]
        plans.append(
            ClipPlan(
                "youcook2",
                video_id,
                f"youcook2/videos/{video_id}.mp4",
                topics[0],
                w,
                h,
                FRAME_RATES[i % len(FRAME_RATES)],
                sum(seconds),
                f"{seed}/youcook2/{i}",
                speech=False,
                segments=tuple(zip(topics, seconds)),
                task=rng.choice(_YOUCOOK2_TASKS),
            )  # fmt: skip
        )
    return plans


def make_plans(config: SampleCorpusConfig) -> list[ClipPlan]:
    """Plan every file of the corpus from the seed (no I/O)."""
    seed = config.seed
    id_rng = random.Random(f"{seed}/ids")
    taken: set[str] = set()
    plans: list[ClipPlan] = []

    def layout(kind: str, i: int, offsets: tuple[int, int]) -> tuple[int, int, int]:
        # Cycling (not sampling) guarantees that any two consecutive files differ in size and rate.
        w, h = RESOLUTIONS[(i + offsets[0]) % len(RESOLUTIONS)]
        return w, h, FRAME_RATES[(i + offsets[1]) % len(FRAME_RATES)]

    kinds = (
        ("howto100m", config.videos),
        ("audioset", config.audioset_clips),
        ("msrvtt", config.msrvtt_videos),
    )
    for kind, n in kinds:
        rng = random.Random(f"{seed}/{kind}")
        topics = _balanced_topics(n, config.num_topics, rng)
        offsets = (rng.randrange(len(RESOLUTIONS)), rng.randrange(len(FRAME_RATES)))
        if kind == "msrvtt":
            numbers = sorted(rng.sample(_MSRVTT_NUMBERS, n))
        ytids = _unique_ids(n, id_rng, taken) if kind != "msrvtt" else []
        for i in range(n):
            w, h, fps = layout(kind, i, offsets)
            if kind == "howto100m":
                name = ytids[i]
                rel = f"howto100m/videos/{name}.mp4"
                duration = rng.randint(config.min_video_s, config.max_video_s)
            elif kind == "audioset":
                start = float(rng.randrange(0, 600))
                duration = config.audioset_clip_s
                rel_name = audioset_file_name(ytids[i], start, start + duration)
                name = rel_name[: -len(".mp4")]
                rel = f"audioset/videos/{rel_name}"
            else:
                name = f"video{numbers[i]}"
                rel = f"msrvtt/videos/{name}.mp4"
                duration = rng.randint(config.msrvtt_min_s, config.msrvtt_max_s)
            plans.append(
                ClipPlan(
                    kind=kind,
                    name=name,
                    rel_path=rel,
                    topic=topics[i],
                    width=w,
                    height=h,
                    fps=fps,
                    duration_s=duration,
                    rng_seed=f"{seed}/{kind}/{i}",
                    speech=kind != "audioset",
                )
            )
    # Drawn after the others, so adding these sets left the older files' content unchanged.
    plans += _labelled_plans(config, id_rng, taken)
    return plans + kinetics_plans(config, id_rng, taken) + webvid_plans(config)


def make_caption_text(topic: Topic, rng: random.Random, min_words: int, max_words: int) -> str:
    """3-8 words, at least half from the topic's word list, the rest filler words."""
    n = rng.randint(min_words, max_words)
    n_topic = max(1, min(len(topic.words), math.ceil(n / 2)))
    words = rng.sample(topic.words, n_topic) + [
        rng.choice(FILLER_WORDS) for _ in range(n - n_topic)
    ]
    rng.shuffle(words)
    return " ".join(words)


def make_intro_caption(topic: Topic, rng: random.Random, min_words: int, max_words: int) -> str:
    """A video's first caption names its activity ("now we car repair the oil"), as people
    in how-to videos do: every topic's name then is in the captions' vocabulary, which the
    labelled sets' class names (zero-shot classification) are made of."""
    name = topic.name.split()
    n = max(len(name) + 1, rng.randint(min_words, max_words))
    others = [w for w in topic.words if w not in name]
    words = rng.sample(others, min(len(others), math.ceil((n - len(name)) / 2)))
    words += [rng.choice(FILLER_WORDS) for _ in range(n - len(name) - len(words))]
    rng.shuffle(words)
    at = rng.randint(0, len(words))
    return " ".join(words[:at] + name + words[at:])


def make_msrvtt_sentence(topic: Topic, rng: random.Random) -> str:
    """One MSR-VTT-like description of a video of this topic, using the topic's words."""
    w = rng.sample(topic.words, 3)
    templates = (
        f"a person is {topic.activity} with the {w[0]} and the {w[1]}",
        f"someone shows how to use a {w[0]} and {w[1]} while {topic.activity}",
        f"a video about {topic.activity} with {w[0]} {w[1]} and {w[2]}",
    )
    return rng.choice(templates)


# ---------------------------------------------------------------------------------------------
# Rendering (subprocess: espeak-ng, ffmpeg)
# ---------------------------------------------------------------------------------------------


def _run(cmd: list[str], what: str) -> bytes:
    try:
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise SampleCorpusError(f"{cmd[0]} not found on PATH (needed for {what})") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SampleCorpusError(f"{cmd[0]} failed for {what}: {tail[0]}")
    return done.stdout


def synthesize_speech(text: str, words_per_minute: int, voice: str, pitch: int) -> bytes:
    """espeak-ng speech of `text` as int16 mono PCM at 22.05 kHz, edge silence trimmed."""
    cmd = ["espeak-ng", "--stdout", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch)]
    raw = _run([*cmd, text], f"speech {text!r}")
    # With --stdout the RIFF sizes are placeholders (0x7ffff...): take everything after "data".
    at = raw.find(b"data")
    if at < 0:
        raise SampleCorpusError(f"espeak-ng wrote no WAV data for {text!r}")
    pcm = memoryview(raw[at + 8 :]).cast("B")
    samples = pcm[: len(pcm) // 2 * 2].cast("h")
    # Trim so caption start/end are where the voice is (espeak pads ~0.2 s of silence).
    threshold = 300
    lo, hi = 0, len(samples)
    while lo < hi and abs(samples[lo]) < threshold:
        lo += 1
    while hi > lo and abs(samples[hi - 1]) < threshold:
        hi -= 1
    return samples[lo:hi].tobytes()


# espeak-ng: seconds of speech ~= 10 * characters / wpm (measured 7-13 over 120-350 wpm).
_SECONDS_X_WPM_PER_CHAR = 10.0
_MIN_WPM, _MAX_WPM = 110, 450


def render_captions(
    plan: ClipPlan, config: SampleCorpusConfig, topic: Topic
) -> tuple[Captions, bytes]:
    """Speak captions one after another; returns caption times and the whole speech track (PCM).

    Each caption starts a random 2.5-5 s after the previous one (never before the previous one
    ended + 0.3 s); its speaking rate is set to fill most of that slot and raised when the
    speech would not fit.
    """
    rng = random.Random(plan.rng_seed + "/captions")
    voice = rng.choice(ESPEAK_VOICES)
    pitch = rng.randint(30, 70)
    gap = 0.3
    starts: list[float] = []
    ends: list[float] = []
    texts: list[str] = []
    track = bytearray()
    t = round(rng.uniform(0.3, 1.5), 2)
    last_end = plan.duration_s - 0.5  # keep clear of the container end (AAC padding)
    while t + 1.0 <= last_end:
        slot = rng.uniform(config.caption_every_min_s, config.caption_every_max_s)
        make_text = make_intro_caption if not texts else make_caption_text
        text = make_text(topic, rng, config.caption_min_words, config.caption_max_words)
        # Speech fills 55-85% of the slot, so most 3.2 s windows hold mostly speech (as in
        # HowTo100M, where people talk nearly all the time).
        target_s = slot * rng.uniform(0.55, 0.85)
        wpm = min(_MAX_WPM, max(_MIN_WPM, round(_SECONDS_X_WPM_PER_CHAR * len(text) / target_s)))
        pcm = synthesize_speech(text, wpm, voice, pitch)
        speech_s = len(pcm) / 2 / ESPEAK_RATE
        if speech_s > slot - gap:
            # Duration scales about as 1 / wpm: re-speak faster, capped at espeak-ng's maximum.
            wpm = min(_MAX_WPM, math.ceil(wpm * speech_s / (slot - gap) * 1.1))
            pcm = synthesize_speech(text, wpm, voice, pitch)
            speech_s = len(pcm) / 2 / ESPEAK_RATE
        end = math.ceil((t + speech_s) * 100) / 100
        if end > last_end:
            break
        start_sample = round(t * ESPEAK_RATE)
        track.extend(bytes(2 * (start_sample - len(track) // 2)))
        track.extend(pcm)
        starts.append(t)
        ends.append(end)
        texts.append(text)
        # Rounded up, so starts stay >= caption_every_min_s apart on the 10 ms grid.
        t = math.ceil((t + max(slot, end - t + gap)) * 100) / 100
    return Captions(starts, ends, texts), bytes(track)


def _hex_jitter(colour: str, rng: random.Random, amount: int = 28) -> str:
    rgb = int(colour, 16)
    parts = [(rgb >> s) & 0xFF for s in (16, 8, 0)]
    parts = [min(255, max(0, p + rng.randint(-amount, amount))) for p in parts]
    return "0x" + "".join(f"{p:02x}" for p in parts)


def _video_filters(plan: ClipPlan, topic: Topic, rng: random.Random) -> tuple[list[str], str]:
    """lavfi inputs (background, shape) and the overlay filter that moves the shape."""
    d, fps = plan.duration_s, plan.fps
    side = min(plan.width, plan.height)
    scale = rng.uniform(0.8, 1.2)
    sw = max(8, int(side * topic.shape[0] * scale) // 2 * 2)
    sh = max(8, int(side * topic.shape[1] * scale) // 2 * 2)
    background = _hex_jitter(topic.colour, rng)
    shape = _hex_jitter(topic.shape_colour, rng, 16)
    speed = f"{topic.speed * rng.uniform(0.75, 1.25):.4f}"
    phase = f"(t+{rng.uniform(0, 10):.3f})"
    lane = f"{rng.uniform(0.2, 0.8):.3f}"
    x, y, enable = (e.format(t=phase, v=speed, y=lane) for e in _MOTIONS[topic.motion])
    inputs = [
        f"color=c={background}:s={plan.width}x{plan.height}:r={fps}:d={d}",
        f"color=c={shape}:s={sw}x{sh}:r={fps}:d={d}",
    ]
    overlay = f"overlay=x='{x}':y='{y}':shortest=1"
    if enable:
        overlay += f":enable='{enable}'"
    return inputs, overlay


def _audio_source(
    plan: ClipPlan, topic: Topic, rng: random.Random, level: float
) -> tuple[str, str]:
    """lavfi audio source and its filter chain (topic sound at `level`)."""
    source, chain = _SOUNDS[topic.sound]
    frequency = topic.frequency * rng.uniform(0.92, 1.08)
    source = source.format(f=f"{frequency:.1f}", seed=rng.randrange(2**31))
    source += f":sample_rate={AUDIO_RATE}:d={plan.duration_s}"
    volume = f"volume={level * rng.uniform(0.85, 1.15):.4f}"
    return source, f"{chain},{volume}" if chain else volume


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _encoder_args(plan: ClipPlan) -> list[str]:
    """Codecs of the file's format: UCF101 is XviD + MP3 in AVI, the web sets H.264 + AAC."""
    if plan.kind == "ucf101":
        video = ["-c:v", "libxvid", "-q:v", "5", "-vtag", "XVID"]
        audio = ["-c:a", "libmp3lame", "-b:a", "64k"]
    else:
        video = ["-c:v", "libx264", "-preset", "ultrafast"]
        # The default AAC coder (twoloop) costs ~3x more CPU than the video here; "fast" is
        # transparent enough for tones and espeak speech.
        audio = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k"]
    # Keyframes every 2 s like typical web video, so decoders can seek to windows cheaply.
    return [*video, "-g", str(2 * plan.fps), *audio, "-ac", "1", "-ar", str(AUDIO_RATE)]


def render_clip(plan: ClipPlan, config: SampleCorpusConfig, out_dir: Path) -> Captions | None:
    """Write one file (mp4, avi or wav by kind); returns its captions for speech clips, else None."""
    target = out_dir / plan.rel_path
    target.parent.mkdir(parents=True, exist_ok=True)  # UCF101 class folders
    partial = target.with_name(target.stem + ".partial" + target.suffix)
    if plan.kind == "esc50":
        _render_sound(plan, partial)
        os.replace(partial, target)
        return None
    if plan.kind == "webvid":
        _render_webvid(plan, partial)
        os.replace(partial, target)
        return None
    # One (topic, seconds) piece per segment; a plain clip is one piece of its own topic.
    pieces = [plan]
    if plan.segments:
        pieces = [
            replace(plan, topic=t, duration_s=d, rng_seed=f"{plan.rng_seed}/{i}")
            for i, (t, d) in enumerate(plan.segments)
        ]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    chains = []
    for i, piece in enumerate(pieces):
        topic = TOPICS[piece.topic]
        rng = random.Random(piece.rng_seed + "/render")
        video_inputs, overlay = _video_filters(piece, topic, rng)
        if plan.kind == "ucf101":
            overlay += ucf101_recording_filter(config.seed, plan.name)
        level = topic.level * (config.speech_background_ratio if plan.speech else 1.0)
        audio_input, audio_chain = _audio_source(piece, topic, rng, level)
        for source in (*video_inputs, audio_input):
            cmd += ["-f", "lavfi", "-i", source]
        chains.append(f"[{3 * i}:v][{3 * i + 1}:v]{overlay},format=yuv420p")
        chains.append(f"[{3 * i + 2}:a]{audio_chain}")
    if len(pieces) == 1:
        graph = f"{chains[0]}[v];{chains[1]}"
    else:
        labels = "".join(f"[v{i}][a{i}]" for i in range(len(pieces)))
        graph = "".join(f"{c}[{'va'[j % 2]}{j // 2}];" for j, c in enumerate(chains))
        graph += f"{labels}concat=n={len(pieces)}:v=1:a=1[v][bg]"
    captions = None
    with tempfile.TemporaryDirectory(prefix="vatt-sample-") as tmp:
        if plan.speech:
            captions, speech = render_captions(plan, config, TOPICS[plan.topic])
            speech_path = Path(tmp) / "speech.wav"
            _write_wav(speech_path, speech, ESPEAK_RATE)
            cmd += ["-i", str(speech_path)]
            # normalize=0 keeps both at their own level (amix would otherwise halve each input).
            graph += (
                f"[bg];[{3 * len(pieces)}:a]aresample={AUDIO_RATE},apad[sp];"
                "[bg][sp]amix=inputs=2:duration=first:normalize=0[a]"
            )
        elif len(pieces) == 1:
            graph += "[a]"
        else:
            graph += ";[bg]anull[a]"
        cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-t", str(plan.duration_s)]
        cmd += [*_encoder_args(plan), str(partial)]
        _run(cmd, plan.rel_path)
    # Rename last, so a crash never leaves a half-written file under its final name.
    os.replace(partial, target)
    return captions


def _render_sound(plan: ClipPlan, target: Path) -> None:
    """An ESC-50-style clip: the topic's sound alone, 16-bit PCM WAV at 44.1 kHz mono."""
    topic = TOPICS[plan.topic]
    rng = random.Random(plan.rng_seed + "/render")
    source, chain = _audio_source(plan, topic, rng, topic.level)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-af", chain]
    cmd += ["-t", str(plan.duration_s), "-c:a", "pcm_s16le", "-ac", "1", "-ar", str(AUDIO_RATE)]
    _run([*cmd, str(target)], plan.rel_path)


# ---------------------------------------------------------------------------------------------
# Metadata files
# ---------------------------------------------------------------------------------------------


def audioset_labels(topic: Topic) -> list[str]:
    """Positive labels of a clip of this topic: its own MID and its sound family's MID."""
    return [topic.mid, SOUND_FAMILY_LABELS[_SOUND_FAMILY[topic.sound]][0]]


def _segment_bounds(plan: ClipPlan) -> tuple[str, str, str]:
    ytid, start, end = plan.name.rsplit("_", 2)
    return ytid, start, end


def write_segments_csv(path: Path, plans: list[ClipPlan]) -> None:
    """AudioSet `*_segments.csv`: three '#' lines, then `YTID, start, end, "mid,mid"` rows."""
    rows = []
    labels: set[str] = set()
    positives = 0
    for plan in plans:
        ytid, start, end = _segment_bounds(plan)
        mids = audioset_labels(TOPICS[plan.topic])
        labels.update(mids)
        positives += len(mids)
        rows.append(f'{ytid}, {start}, {end}, "{",".join(mids)}"')
    ytids = len({_segment_bounds(p)[0] for p in plans})
    counts = (
        f"# num_ytids={ytids}, num_segs={len(plans)}, "
        f"num_unique_labels={len(labels)}, num_positives={positives}"
    )
    lines = [SEGMENTS_CREATED_LINE, counts, SEGMENTS_COLUMNS_LINE, *rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_class_labels_csv(path: Path) -> None:
    """AudioSet `class_labels_indices.csv` for every label this generator can emit."""
    entries = [(t.mid, f"{t.name.capitalize()} (synthetic)") for t in TOPICS]
    entries += list(SOUND_FAMILY_LABELS.values())
    buf = io.StringIO()
    buf.write("index,mid,display_name\n")
    # The real file quotes every display name (they contain commas).
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    for i, (mid, display) in enumerate(entries):
        buf.write(f"{i},{mid},")
        writer.writerow([display])
    path.write_text(buf.getvalue(), encoding="utf-8")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV as the public sets ship theirs: the header line, then `rows`; UTF-8, LF line
    ends."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def write_msrvtt_csv(path: Path, plans: list[ClipPlan], seed: int) -> None:
    """MSR-VTT 1k-A style test CSV: one sentence per video."""
    rng = random.Random(f"{seed}/msrvtt/sentences")
    rows = []
    for i, plan in enumerate(plans):
        number = plan.name[len("video") :]
        sentence = make_msrvtt_sentence(TOPICS[plan.topic], rng)
        rows.append([f"ret{i}", f"msr{number}", plan.name, sentence])
    write_csv(path, MSRVTT_HEADER, rows)


def write_ucf101_splits(split_dir: Path, plans: list[ClipPlan], groups: int) -> None:
    """UCF101 split files, with its CRLF line ends: classInd.txt ("1 ClassName", classes in
    alphabetical order), trainlist0<s>.txt ("Class/v_..._g08_c01.avi 1") and
    testlist0<s>.txt ("Class/v_..._g01_c01.avi"), test groups disjoint from training ones."""
    split_dir.mkdir(parents=True, exist_ok=True)
    classes = sorted({ucf101_class_name(TOPICS[p.topic]) for p in plans})
    index = {c: i for i, c in enumerate(classes, start=1)}
    (split_dir / "classInd.txt").write_bytes(
        "".join(f"{i} {c}\r\n" for c, i in index.items()).encode()
    )
    # Sorted by class, then group and clip, as in the real lists.
    rows = sorted((ucf101_class_name(TOPICS[p.topic]), p.name) for p in plans)
    for split in ucf101_splits(groups):
        test_groups = ucf101_test_groups(groups, split)
        train, test = [], []
        for cls, name in rows:
            group = int(name.rsplit("_g", 1)[1][:2])
            if group in test_groups:
                test.append(f"{cls}/{name}.avi\r\n")
            else:
                train.append(f"{cls}/{name}.avi {index[cls]}\r\n")
        (split_dir / f"trainlist{split:02d}.txt").write_bytes("".join(train).encode())
        (split_dir / f"testlist{split:02d}.txt").write_bytes("".join(test).encode())


def write_esc50_csv(path: Path, plans: list[ClipPlan]) -> None:
    """ESC-50 `meta/esc50.csv`, sorted by filename; target = topic index, esc10 marks the
    even targets (a subset, as ESC-10 is of ESC-50)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for plan in sorted(plans, key=lambda p: p.name):
        fold, src, take, target = plan.name.split("-")
        category = esc50_category(TOPICS[plan.topic])
        esc10 = str(plan.topic % 2 == 0)
        rows.append([f"{plan.name}.wav", fold, target, category, esc10, src, take])
    write_csv(path, ESC50_COLUMNS, rows)


def youcook2_segments(plan: ClipPlan) -> list[tuple[int, int, int]]:
    """(topic, start, end) of each segment of a YouCook2-style video, in whole seconds."""
    out, t = [], 0
    for topic, seconds in plan.segments:
        out.append((topic, t, t + seconds))
        t += seconds
    return out


def write_youcook2_csv(path: Path, plans: list[ClipPlan], seed: int) -> None:
    """YouCook2 validation CSV `end,start,task,text,video_id`: one row per segment, whose
    text is a sentence about that segment's topic."""
    rng = random.Random(f"{seed}/youcook2/sentences")
    rows = []
    for plan in plans:
        for topic, start, end in youcook2_segments(plan):
            sentence = make_msrvtt_sentence(TOPICS[topic], rng)
            rows.append([end, start, plan.task, sentence, plan.name])
    write_csv(path, YOUCOOK2_COLUMNS, rows)


def write_topics_json(
    path: Path, config: SampleCorpusConfig, plans: list[ClipPlan], captions: dict[str, Captions]
) -> None:
    """Ground truth: topics, the topic (and format) of every file, seed and generator version."""
    files: dict[str, dict[str, dict]] = {kind: {} for kind in KINDS}
    for plan in plans:
        entry = {
            "topic": TOPICS[plan.topic].name,
            "path": plan.rel_path,
            "duration": plan.duration_s,
        }
        if plan.kind != "esc50":
            entry |= {"width": plan.width, "height": plan.height, "fps": plan.fps}
        if plan.name in captions:
            entry["num_captions"] = len(captions[plan.name].text)
        if plan.kind == "ucf101":
            entry["class"] = ucf101_class_name(TOPICS[plan.topic])
        elif plan.kind == "esc50":
            entry["fold"] = int(plan.name.split("-")[0])
            entry["category"] = esc50_category(TOPICS[plan.topic])
        elif plan.kind == "kinetics":
            entry |= {"label": kinetics_label(TOPICS[plan.topic]), "split": kinetics_split(plan)}
        elif plan.kind == "webvid":
            entry.update(webvid_truth(plan))
            if plan.right_topic >= 0:
                del entry["topic"]  # `left` and `right` instead
        elif plan.kind == "youcook2":
            del entry["topic"]  # one per segment instead
            entry["task"] = plan.task
            entry["segments"] = [
                {"topic": TOPICS[t].name, "start": a, "end": b}
                for t, a, b in youcook2_segments(plan)
            ]
        files[plan.kind][plan.name] = entry
    topics = [
        {
            "name": t.name,
            "words": list(t.words),
            "colour": t.colour,
            "shape_colour": t.shape_colour,
            "motion": t.motion,
            "sound": t.sound,
            "audioset_labels": audioset_labels(t),
        }
        for t in TOPICS[: config.num_topics]
    ]
    doc = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": config.seed,
        "config": config.content_dict(),
        "topics": topics,
        "files": files,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

KINDS = ("howto100m", "audioset", "msrvtt", "ucf101", "esc50", "youcook2", "kinetics", "webvid")
_OWNED = (*KINDS, "topics.json")


def _read_topics_json(out_dir: Path) -> dict | None:
    try:
        doc = json.loads((out_dir / "topics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _is_ours(out_dir: Path) -> bool:
    """A folder we provably wrote: it holds our topics.json (a finished corpus), or only the
    folders a run writes before topics.json (an interrupted one)."""
    doc = _read_topics_json(out_dir)
    if doc is not None:
        return doc.get("generator") == GENERATOR
    return all(p.name in KINDS and p.is_dir() for p in out_dir.iterdir())


def complete_corpus(out_dir: Path, config: SampleCorpusConfig, plans: list[ClipPlan]) -> bool:
    """True when `out_dir` holds a finished corpus of this generator version and the same
    content settings, every planned file present (topics.json is written last)."""
    doc = _read_topics_json(out_dir)
    if doc is None or doc.get("generator") != GENERATOR or doc.get("version") != GENERATOR_VERSION:
        return False
    # JSON round trip so tuples compare equal to the lists topics.json holds.
    if doc.get("config") != json.loads(json.dumps(config.content_dict())):
        return False
    return all((out_dir / p.rel_path).is_file() for p in plans)


def prepare_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty OUT unless it is an earlier sample corpus and `overwrite` is set."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"output folder {out_dir} is not empty; pick a new one, --reuse or --overwrite"
            )
        # Only delete what we provably wrote.
        if not _is_ours(out_dir):
            raise ValueError(
                f"refusing to overwrite {out_dir}: it holds no sample-corpus topics.json"
            )
        for name in _OWNED:
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for sub in ("howto100m/videos", "audioset/videos", "msrvtt/videos"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def check_tools() -> None:
    """Fail early, with one line, when an encoder is missing."""
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SampleCorpusError(f"{tool} not found on PATH (apt-get install ffmpeg espeak-ng)")


def generate_sample_corpus(
    out_dir: str | Path,
    config: SampleCorpusConfig,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    reuse: bool = False,
) -> SampleCorpusSummary:
    """Write the whole corpus under `out_dir`.

    Args:
        out_dir: target folder (created; must be empty unless `overwrite` and it is ours).
        config: what to generate.
        overwrite: replace an earlier sample corpus in `out_dir`.
        reuse: keep a finished corpus of the same settings already in `out_dir` (nothing is
            written; the summary says so); an interrupted or different one of ours is
            regenerated. What makes `make demo` safe to re-run.
        progress: called as progress(done, total, name): once with done=0 after the checks
            passed, then after every finished file.
    Returns:
        A summary (counts, sizes, seconds).
    Raises:
        ValueError: bad output folder. SampleCorpusError: encoder missing or failed.
    """
    began = time.perf_counter()
    out = Path(out_dir)
    check_tools()
    plans = make_plans(config)
    if reuse and complete_corpus(out, config, plans):
        howto = json.loads((out / "howto100m" / "caption.json").read_text(encoding="utf-8"))
        captions = {name: Captions(**c) for name, c in howto.items()}
        summary = _summarize(out, config, plans, captions, time.perf_counter() - began)
        return dataclasses.replace(summary, reused=True)
    prepare_output_dir(out, overwrite or reuse)
    total = len(plans)
    if progress:
        progress(0, total, "")
    captions: dict[str, Captions] = {}
    # Longest first: the pool finishes close together instead of waiting on one long video.
    order = sorted(plans, key=lambda p: -p.duration_s)
    with concurrent.futures.ThreadPoolExecutor(max_workers=config.workers) as pool:
        futures = {pool.submit(render_clip, p, config, out): p for p in order}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                plan = futures[future]
                result = future.result()
                if result is not None:
                    captions[plan.name] = result
                if progress:
                    progress(done, total, plan.rel_path)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    _write_metadata(out, config, plans, captions)
    return _summarize(out, config, plans, captions, time.perf_counter() - began)


def _write_metadata(
    out: Path, config: SampleCorpusConfig, plans: list[ClipPlan], captions: dict[str, Captions]
) -> None:
    howto = [p for p in plans if p.kind == "howto100m"]
    caption_json = {p.name: asdict(captions[p.name]) for p in howto}
    (out / "howto100m" / "caption.json").write_text(json.dumps(caption_json), encoding="utf-8")
    write_segments_csv(
        out / "audioset" / "segments.csv", [p for p in plans if p.kind == "audioset"]
    )
    write_class_labels_csv(out / "audioset" / "class_labels_indices.csv")
    write_msrvtt_csv(
        out / "msrvtt" / "msrvtt_test.csv", [p for p in plans if p.kind == "msrvtt"], config.seed
    )
    if config.ucf101_clips:
        ucf = [p for p in plans if p.kind == "ucf101"]
        write_ucf101_splits(out / "ucf101" / "splits", ucf, config.ucf101_groups)
    if config.esc50_clips:
        write_esc50_csv(
            out / "esc50" / "meta" / "esc50.csv", [p for p in plans if p.kind == "esc50"]
        )
    if config.youcook2_videos:
        youcook = [p for p in plans if p.kind == "youcook2"]
        write_youcook2_csv(out / "youcook2" / "youcookii_val.csv", youcook, config.seed)
    if config.kinetics_clips:
        kinetics = [p for p in plans if p.kind == "kinetics"]
        write_kinetics_csvs(out / "kinetics" / "annotations", kinetics)
    if config.webvid_clips or config.webvid_pairs:
        write_webvid_csvs(out / "webvid", [p for p in plans if p.kind == "webvid"])
    # Written last: its presence marks a complete corpus.
    write_topics_json(out / "topics.json", config, plans, captions)


def _summarize(
    out: Path,
    config: SampleCorpusConfig,
    plans: list[ClipPlan],
    captions: dict[str, Captions],
    seconds: float,
) -> SampleCorpusSummary:
    howto = [p for p in plans if p.kind == "howto100m"]
    n_captions = sum(len(captions[p.name].text) for p in howto)
    total_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return SampleCorpusSummary(
        out_dir=out,
        howto_videos=len(howto),
        captions=n_captions,
        audioset_clips=config.audioset_clips,
        msrvtt_videos=config.msrvtt_videos,
        video_seconds=float(sum(p.duration_s for p in plans if p.kind != "esc50")),
        total_bytes=total_bytes,
        seconds=seconds,
        ucf101_clips=config.ucf101_clips,
        esc50_clips=config.esc50_clips,
        youcook2_videos=config.youcook2_videos,
        youcook2_segments=sum(len(p.segments) for p in plans if p.kind == "youcook2"),
        kinetics_clips=config.kinetics_clips,
        webvid_clips=config.webvid_clips,
        webvid_pairs=config.webvid_pairs,
    )


# ---------------------------------------------------------------------------------------------
# The Kinetics-style labelled set (kept in this section: plans, names, CSVs)
# ---------------------------------------------------------------------------------------------

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
# The annotation file of each split, as Kinetics-400/600/700 name them.
KINETICS_CSV = {"train": "train.csv", "val": "validate.csv"}


def _validate_kinetics(config: SampleCorpusConfig) -> None:
    if config.kinetics_clips_per_class < 0 or config.kinetics_clips_per_class == 1:
        raise ValueError(
            "kinetics_clips_per_class must be 0 or >= 2 (training + validation clips), "
            f"got {config.kinetics_clips_per_class}"
        )
    if config.kinetics_clip_s < 1:
        raise ValueError(f"kinetics_clip_s must be >= 1, got {config.kinetics_clip_s}")


def kinetics_label(topic: Topic) -> str:
    """Kinetics-style label: lower case words with spaces ("car repair")."""
    return topic.name


def kinetics_file_name(ytid: str, start: int, end: int) -> str:
    """`<YTID>_<start>_<end>.mp4` with 6-digit seconds, as the Kinetics download scripts write."""
    return f"{ytid}_{start:06d}_{end:06d}.mp4"


def kinetics_split(plan: ClipPlan) -> str:
    """'train' or 'val': the split folder of a Kinetics-style plan's path."""
    return plan.rel_path.split("/")[2]


def kinetics_plans(
    config: SampleCorpusConfig, id_rng: random.Random, taken: set[str]
) -> list[ClipPlan]:
    """Kinetics-style clips: `kinetics_clips_per_class` per topic, the last quarter of each
    class (at least one) in the validation split; each a 10 s cut [start, end] of a video."""
    n = config.kinetics_clips_per_class
    if n == 0:
        return []
    rng = random.Random(f"{config.seed}/kinetics")
    ytids = _unique_ids(config.num_topics * n, id_rng, taken)
    val = max(1, round(n / 4))
    plans = []
    for t in range(config.num_topics):
        label = kinetics_label(TOPICS[t])
        for j in range(n):
            i = t * n + j
            split = "val" if j >= n - val else "train"
            start = rng.randrange(0, 300)
            name = kinetics_file_name(ytids[i], start, start + config.kinetics_clip_s)
            w, h = RESOLUTIONS[i % len(RESOLUTIONS)]
            plans.append(
                ClipPlan(
                    "kinetics",
                    name[: -len(".mp4")],
                    f"kinetics/videos/{split}/{label}/{name}",
                    t,
                    w,
                    h,
                    FRAME_RATES[i % len(FRAME_RATES)],
                    config.kinetics_clip_s,
                    f"{config.seed}/kinetics/{i}",
                    speech=False,
                )  # fmt: skip
            )
    return plans


def write_kinetics_csvs(folder: Path, plans: list[ClipPlan]) -> None:
    """train.csv and validate.csv: `label,youtube_id,time_start,time_end,split` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for plan in plans:
        ytid, start, end = plan.name.rsplit("_", 2)
        label = kinetics_label(TOPICS[plan.topic])
        rows.append([label, ytid, int(start), int(end), kinetics_split(plan)])
    for split, file_name in KINETICS_CSV.items():
        write_csv(folder / file_name, KINETICS_COLUMNS, [r for r in rows if r[-1] == split])


# ---------------------------------------------------------------------------------------------
# Deliberately broken inputs for other tests
# ---------------------------------------------------------------------------------------------

BAD_INPUT_KINDS = ("truncated", "empty", "random_bytes", "no_audio", "audio_only", "too_short")


def make_bad_inputs(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write one file per kind of bad input a reader must survive; returns {kind: path}.

    truncated:    first 30% of a good 4 s mp4 (moov atom is at the end: ffprobe rejects it)
    empty:        zero-length .mp4
    random_bytes: 4 KiB of random bytes named .mp4
    no_audio:     valid 4 s H.264 mp4 without an audio stream
    audio_only:   valid 4 s AAC .mp4 without a video stream
    too_short:    valid 1.5 s H.264 + AAC mp4 (shorter than one 3.2 s window)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_tools()
    rng = random.Random(f"{seed}/bad")
    video = ["-f", "lavfi", "-i", "testsrc2=s=160x120:r=10"]
    audio = ["-f", "lavfi", "-i", f"sine=f=440:sample_rate={AUDIO_RATE}"]
    v_codec = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    a_codec = ["-c:a", "aac", "-b:a", "32k", "-ac", "1"]
    base = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    paths = {kind: out / f"bad_{kind}.mp4" for kind in BAD_INPUT_KINDS}

    with tempfile.TemporaryDirectory(prefix="vatt-bad-") as tmp:
        good = Path(tmp) / "good.mp4"
        _run([*base, *video, *audio, "-t", "4", *v_codec, *a_codec, str(good)], "bad inputs")
        data = good.read_bytes()
        paths["truncated"].write_bytes(data[: int(len(data) * 0.3)])
    paths["empty"].write_bytes(b"")
    paths["random_bytes"].write_bytes(rng.randbytes(4096))
    _run([*base, *video, "-t", "4", *v_codec, str(paths["no_audio"])], "bad input no_audio")
    _run([*base, *audio, "-t", "4", *a_codec, str(paths["audio_only"])], "bad input audio_only")
    too_short = [*base, *video, *audio, "-t", "1.5", *v_codec, *a_codec, str(paths["too_short"])]
    _run(too_short, "bad input too_short")
    return paths


# ---------------------------------------------------------------------------------------------
# The WebVid-style video-text set (plans, captions, rendering, CSVs, ground truth)
# ---------------------------------------------------------------------------------------------

WEBVID_COLUMNS = ("videoid", "contentUrl", "duration", "page_dir", "name")
WEBVID_SIZE = (448, 252)  # 16:9 like WebVid's 596x336 previews; each half of a pair is 224 wide
WEBVID_PAGE = 16  # clips per page_dir folder
WEBVID_CSV = {"train": "results_train.csv", "val": "results_val.csv"}


def webvid_plans(config: SampleCorpusConfig) -> list[ClipPlan]:
    """Single-topic clips (topics balanced) and two-topic clips (distinct ordered pairs, as
    many different ones as possible), in one shuffled order that decides their page_dir.
    Val: the 4th clip of each topic's single clips and every 4th pair, and at least one of
    each kind that has 2 or more."""
    rng = random.Random(f"{config.seed}/webvid")
    n_single, n_pair = config.webvid_clips, config.webvid_pairs
    topics = _balanced_topics(n_single, config.num_topics, rng)
    seen: dict[int, int] = {}
    entries = []  # (left topic, right topic, split)
    for t in topics:
        seen[t] = seen.get(t, 0) + 1
        entries.append((t, -1, "val" if seen[t] % 4 == 0 else "train"))
    pairs = [(a, b) for a in range(config.num_topics) for b in range(config.num_topics) if a != b]
    rng.shuffle(pairs)
    for i in range(n_pair):
        a, b = pairs[i % len(pairs)]
        entries.append((a, b, "val" if i % 4 == 3 else "train"))
    for lo, hi in ((0, n_single), (n_single, n_single + n_pair)):
        if hi - lo >= 2 and all(e[2] == "train" for e in entries[lo:hi]):
            entries[hi - 1] = (*entries[hi - 1][:2], "val")
    ids = rng.sample(range(10_000_000, 2_000_000_000), len(entries))  # WebVid ids are numbers
    order = list(range(len(entries)))
    rng.shuffle(order)
    w, h = WEBVID_SIZE
    plans = []
    for pos, i in enumerate(order):
        left, right, split = entries[i]
        page = pos // WEBVID_PAGE
        page_dir = f"{page * WEBVID_PAGE + 1:06d}_{(page + 1) * WEBVID_PAGE:06d}"
        name = str(ids[i])
        plans.append(
            ClipPlan(
                "webvid",
                name,
                f"webvid/videos/{page_dir}/{name}.mp4",
                left,
                w,
                h,
                FRAME_RATES[pos % len(FRAME_RATES)],
                rng.randint(config.webvid_min_s, config.webvid_max_s),
                f"{config.seed}/webvid/{name}",
                speech=False,
                right_topic=right,
                split=split,
                page_dir=page_dir,
            )  # fmt: skip
        )
    return plans


def webvid_caption(plan: ClipPlan) -> tuple[str, dict[str, list[str]]]:
    """The clip's WebVid-style description and, per topic, the topic words it uses (what a
    masked-language test masks). A two-topic caption names both and says which side."""
    rng = random.Random(plan.rng_seed + "/caption")
    left = TOPICS[plan.topic]
    if plan.right_topic < 0:
        w = rng.sample(left.words, 3)
        text = rng.choice(
            (
                f"close up of {w[0]} and {w[1]} while {left.activity}",
                f"{left.activity} with the {w[0]}, {w[1]} and {w[2]}",
                f"a person {left.activity}, {w[0]} and {w[1]} in view",
            )
        )
        topics = [left]
    else:
        right = TOPICS[plan.right_topic]
        a, b = rng.sample(left.words, 2), rng.sample(right.words, 2)
        text = rng.choice(
            (
                f"split screen: {left.activity} with {a[0]} on the left, "
                f"{right.activity} with {b[0]} on the right",
                f"left side {left.activity} with the {a[0]} and {a[1]}, "
                f"right side {right.activity} with the {b[0]} and {b[1]}",
                f"two scenes side by side, {left.activity} with {a[0]} on the left "
                f"and {right.activity} with {b[0]} on the right",
            )
        )
        topics = [left, right]
    tokens = re.findall(r"[a-z]+", text.lower())
    words = {t.name: [w for w in tokens if w in t.words] for t in topics}
    return text[0].upper() + text[1:], words


def _webvid_halves(plan: ClipPlan) -> list[ClipPlan]:
    """What is rendered: the whole frame, or a left and a right half-width scene."""
    if plan.right_topic < 0:
        return [plan]
    return [
        replace(plan, width=plan.width // 2, rng_seed=f"{plan.rng_seed}/left"),
        replace(plan, width=plan.width // 2, topic=plan.right_topic, rng_seed=f"{plan.rng_seed}/right"),
    ]  # fmt: skip


def _webvid_scene(half: ClipPlan) -> tuple[list[str], str]:
    return _video_filters(half, TOPICS[half.topic], random.Random(half.rng_seed + "/render"))


def webvid_truth(plan: ClipPlan) -> dict:
    """topics.json's extra fields of a WebVid-style clip (see the module docstring)."""
    caption, words = webvid_caption(plan)
    right = plan.right_topic if plan.right_topic >= 0 else plan.topic
    # The background colour actually drawn in each half (the topic's, jittered per clip).
    drawn = [
        _webvid_scene(h)[0][0].split("c=", 1)[1].split(":", 1)[0] for h in _webvid_halves(plan)
    ]
    return {
        "split": plan.split,
        "layout": "pair" if plan.right_topic >= 0 else "single",
        "left": TOPICS[plan.topic].name,
        "right": TOPICS[right].name,
        "caption": caption,
        "caption_words": words,
        "page_dir": plan.page_dir,
        "backgrounds": {"left": drawn[0], "right": drawn[-1]},
    }


def _render_webvid(plan: ClipPlan, target: Path) -> None:
    """A silent H.264 clip: the topic's scene over the whole frame, or two topics' scenes
    side by side (each rendered at half width, so its shape stays inside its half)."""
    halves = _webvid_halves(plan)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    chains = []
    for i, half in enumerate(halves):
        video_inputs, overlay = _webvid_scene(half)
        for source in video_inputs:
            cmd += ["-f", "lavfi", "-i", source]
        chains.append(f"[{2 * i}:v][{2 * i + 1}:v]{overlay}")
    if len(halves) == 1:
        graph = f"{chains[0]},format=yuv420p[v]"
    else:
        graph = f"{chains[0]}[l];{chains[1]}[r];[l][r]hstack=inputs=2,format=yuv420p[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]", "-t", str(plan.duration_s), "-an"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * plan.fps), str(target)]
    _run(cmd, plan.rel_path)


def write_webvid_csvs(folder: Path, plans: list[ClipPlan]) -> None:
    """results_train.csv and results_val.csv in WebVid's columns (duration as ISO 8601, a
    contentUrl that points nowhere: nothing is downloaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in WEBVID_CSV.items():
        rows = []
        for plan in (p for p in plans if p.split == split):
            url = f"https://example.invalid/webvid/{plan.page_dir}/{plan.name}.mp4"
            duration = f"PT00H00M{plan.duration_s:02d}S"
            caption = webvid_caption(plan)[0]
            rows.append([plan.name, url, duration, plan.page_dir, caption])
        write_csv(folder / name, WEBVID_COLUMNS, rows)
