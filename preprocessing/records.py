"""Record types shared across preprocessing stages: inputs, captions and error rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from preprocessing.storage import redact


@dataclass
class Caption:
    text: str
    start: float
    end: float


@dataclass
class InputVideo:
    """One input file and what the source listing says about it (before probing)."""

    source: str  # "howto100m" | "audioset" | "webvid"
    video_id: str  # HowTo100M video id / AudioSet YTID / WebVid videoid
    clip_id: str  # unique id of this file: video id (HowTo100M) or <YTID>_<start ms>_<end ms>
    path: str
    # HowTo100M: sorted by start; WebVid: the one caption of the clip (times set when planned)
    captions: list[Caption] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # AudioSet label MIDs (kept for probes)
    segment_start: float | None = None  # AudioSet: the segment's offset in the YouTube video
    segment_end: float | None = None


@dataclass
class ErrorRow:
    """One row of errors.parquet: a failed (or adjusted) input, caption or window."""

    source: str
    video_id: str
    stage: str  # captions | segments | csv | input | probe | window | decode
    reason: str
    path: str = ""
    # Adjustments that are documented behaviour (e.g. a clamped caption time) are recorded
    # with fatal=False: they explain the data but do not count towards the error threshold.
    fatal: bool = True

    def __post_init__(self) -> None:
        # Rows are persisted (errors.parquet, stats) and printed: one line each, and no
        # credentials from a URI (file names may hold newlines; URIs may hold secrets).
        self.reason = redact(" ".join(str(self.reason).split()))
        self.path = redact(self.path)

    def to_dict(self) -> dict:
        return asdict(self)
