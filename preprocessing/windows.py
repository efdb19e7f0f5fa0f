"""Clip windows: where samples are cut from a video, and the nearest-k captions of each.

The window rule (also in docs/shard-format.md):
- A stored window is `window_seconds` long (default 4.0 s), longer than the 3.2 s training
  window, so the loader crops a random 3.2 s inside it. A video shorter than the window gives
  one window covering the whole video if it is at least `train_window_seconds` long, else none.
- HowTo100M: one window per caption, centred on the caption's midpoint and shifted to lie
  inside the video. A caption whose midpoint is closer than window_seconds/2 to the previous
  kept window's centre adds no window (so windows overlap by at most half), nor does one
  whose shifted window starts where the previous one does (near the end of the video, or in
  a video shorter than a window): two windows never share a start, so never a sample key.
- AudioSet: n = max(1, floor(segment / window)) windows spread evenly over the labelled
  segment (`audioset_windows: cover`: ceil, overlapping windows that leave no gap): the whole file when it is the cut segment, else the segment's time range within
  it (`segment_range`).
Captions per window: the spec's nearest-k algorithm (`nearest_captions`), nearest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from preprocessing.records import Caption, ErrorRow


@dataclass
class ClipWindow:
    """One stored sample's time range and its captions (nearest first)."""

    start: float
    end: float
    anchor: int = -1  # index of the anchor caption (HowTo100M), -1 for AudioSet
    captions: list[Caption] = field(default_factory=list)


def nearest_captions(captions: list[Caption], anchor: int, k: int) -> list[int]:
    """Indices of the k captions around `anchor`, nearest first (spec §1).

    Grow a contiguous run of captions around the anchor one at a time, always towards the side
    whose resulting time span (max end - min start) is shorter; on a tie, towards the caption
    whose midpoint is closer to the anchor's, then the earlier one; at a video end only the
    other side can grow. `captions` must be sorted by start."""
    n = len(captions)
    if not 0 <= anchor < n:
        raise ValueError(f"anchor {anchor} out of range for {n} captions")

    def mid(c: Caption) -> float:
        return (c.start + c.end) / 2

    lo = hi = anchor
    order = [anchor]
    span_start, span_end = captions[anchor].start, captions[anchor].end
    center = mid(captions[anchor])
    while len(order) < min(k, n):
        left = right = (math.inf, math.inf)
        if lo > 0:
            c = captions[lo - 1]
            left = (max(span_end, c.end) - min(span_start, c.start), abs(mid(c) - center))
        if hi < n - 1:
            c = captions[hi + 1]
            right = (max(span_end, c.end) - min(span_start, c.start), abs(mid(c) - center))
        if left <= right:
            lo -= 1
            idx = lo
        else:
            hi += 1
            idx = hi
        order.append(idx)
        span_start = min(span_start, captions[idx].start)
        span_end = max(span_end, captions[idx].end)
    return order


def clamp_captions(
    captions: list[Caption], duration: float, video_id: str, path: str
) -> tuple[list[Caption], list[ErrorRow]]:
    """Drop captions that start at/after the end of the video; clamp ends past it (documented)."""
    kept: list[Caption] = []
    errors: list[ErrorRow] = []
    for i, c in enumerate(captions):
        if c.start >= duration:
            errors.append(
                ErrorRow(
                    "howto100m",
                    video_id,
                    "captions",
                    f"caption {i} starts at {c.start:.2f}s, after the video ends ({duration:.2f}s); dropped",
                    path,
                    fatal=False,
                )
            )
            continue
        if c.end > duration:
            errors.append(
                ErrorRow(
                    "howto100m",
                    video_id,
                    "captions",
                    f"caption {i} ends at {c.end:.2f}s, after the video ends ({duration:.2f}s); clamped",
                    path,
                    fatal=False,
                )
            )
            c = Caption(c.text, c.start, duration)
        kept.append(c)
    return kept, errors


def _fit(center: float, length: float, duration: float) -> tuple[float, float]:
    start = min(max(0.0, center - length / 2), duration - length)
    return round(start, 3), round(start + length, 3)


def caption_windows(
    captions: list[Caption], duration: float, window: float, min_window: float, k: int
) -> list[ClipWindow]:
    """HowTo100M windows anchored on captions (rule in the module docstring)."""
    if duration < min_window or not captions:
        return []
    length = min(window, duration)
    out: list[ClipWindow] = []
    last_center = -math.inf
    for i, c in enumerate(captions):
        center = (c.start + c.end) / 2
        if center - last_center < length / 2 - 1e-6:  # tolerance: float midpoints
            continue
        start, end = _fit(center, length, duration)
        if out and start == out[-1].start:  # shifted onto the previous window
            continue
        last_center = center
        picked = [captions[j] for j in nearest_captions(captions, i, k)]
        out.append(ClipWindow(start, end, anchor=i, captions=picked))
    return out


# A file at most this much longer than its AudioSet segment is the cut segment (downloaders
# cut at keyframes or pad a little); a longer one is the whole video.
SEGMENT_SLACK_S = 0.5


def segment_range(
    duration: float, segment_start: float, segment_end: float
) -> tuple[float, float] | str:
    """Where the labelled AudioSet segment lies in a file of `duration` seconds: (start, end)
    on the file's timeline, or a one-line reason when that cannot be told."""
    length = segment_end - segment_start
    if duration <= length + SEGMENT_SLACK_S:  # the cut segment itself
        return 0.0, duration
    if duration >= segment_end - SEGMENT_SLACK_S:  # the whole video: cut the segment out
        return segment_start, min(segment_end, duration)
    return (
        f"file is {duration:.2f}s, longer than its {length:g}s segment but ending before the "
        f"segment's end ({segment_end:g}s): neither the cut segment nor the whole video"
    )


def segment_windows(
    duration: float, window: float, min_window: float, offset: float = 0.0, cover: bool = False
) -> list[ClipWindow]:
    """AudioSet windows spread evenly over [offset, offset + duration] (rule in the module
    docstring); `cover`: as many as it takes to cover the whole segment (overlapping)."""
    if duration < min_window:
        return []
    length = min(window, duration)
    fit = duration / length
    n = max(1, math.ceil(fit - 1e-6) if cover else math.floor(fit + 1e-6))
    step = (duration - length) / (n - 1) if n > 1 else 0.0
    first = offset + (0.0 if n > 1 else (duration - length) / 2)
    return [
        ClipWindow(round(first + i * step, 3), round(first + i * step + length, 3))
        for i in range(n)
    ]
