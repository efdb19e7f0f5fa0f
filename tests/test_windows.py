"""Clip windows and the nearest-5 caption rule (pure functions, no media)."""

import pytest

from preprocessing.records import Caption
from preprocessing.windows import (
    caption_windows,
    clamp_captions,
    nearest_captions,
    segment_range,
    segment_windows,
)


def caps(*spans):
    return [Caption(f"c{i}", s, e) for i, (s, e) in enumerate(spans)]


EVEN = caps(*[(2.0 * i, 2.0 * i + 1.5) for i in range(10)])  # a caption every 2 s


def test_nearest_grows_towards_shorter_span_nearest_first():
    # Gaps: c1->c2 is short (0.1 s), c2->c3 is long (5 s): from c2, c1 is nearer than c3.
    c = caps((0, 1), (1.0, 2.0), (2.1, 3.0), (8.0, 9.0), (9.1, 10.0), (10.1, 11.0))
    assert nearest_captions(c, 2, 5) == [2, 1, 0, 3, 4]


def test_nearest_at_start_and_end_of_video_clamps():
    assert nearest_captions(EVEN, 0, 5) == [0, 1, 2, 3, 4]
    assert nearest_captions(EVEN, 9, 5) == [9, 8, 7, 6, 5]
    # One caption from the start: after taking c0, only the right side can grow.
    assert nearest_captions(EVEN, 1, 5) == [1, 0, 2, 3, 4]


def test_nearest_fewer_captions_than_k():
    c = caps((0, 1), (3, 4), (5, 6))
    assert nearest_captions(c, 1, 5) == [1, 2, 0]
    assert nearest_captions(caps((0, 1)), 0, 5) == [0]


def test_nearest_ties_go_to_the_closer_midpoint_then_the_earlier_side():
    # Evenly spaced: every step ties on span; the closer midpoint alternates the sides, and
    # when both candidates are equally close the earlier one comes first.
    assert nearest_captions(EVEN, 5, 5) == [5, 4, 6, 3, 7]
    # Same span either way, but the right caption's midpoint is closer to the anchor's.
    c = caps((0.0, 0.5), (1.0, 3.0), (3.5, 4.0))
    assert nearest_captions(c, 1, 2) == [1, 0]  # spans: left 3.0, right 3.0; midpoints 1.75 vs 1.75
    c = caps((0.0, 1.0), (1.0, 3.0), (3.0, 3.2), (9.0, 9.5))
    assert nearest_captions(c, 1, 2) == [1, 2]  # spans 3.0 vs 2.2: right is shorter


def test_nearest_uses_span_of_overlapping_captions():
    # c1 overlaps c0 entirely, so adding c0 does not lengthen the span: taken before c2.
    c = caps((0.0, 6.0), (1.0, 2.0), (2.2, 3.0))
    # span with c0: 6.0 - 0.0 = 6.0; with c2: 3.0 - 1.0 = 2.0 -> c2
    assert nearest_captions(c, 1, 2) == [1, 2]


def test_nearest_rejects_bad_anchor():
    with pytest.raises(ValueError, match="anchor"):
        nearest_captions(EVEN, 10, 5)


def test_caption_windows_are_centered_inside_and_merged():
    w = caption_windows(EVEN, duration=20.0, window=4.0, min_window=3.2, k=5)
    # Midpoints are 2 s apart = window/2: none merged.
    assert len(w) == 10
    assert all(0 <= x.start and x.end <= 20.0 and abs(x.end - x.start - 4.0) < 1e-6 for x in w)
    assert w[0].start == 0.0  # first caption's window shifted right to start at 0
    assert w[5].start == pytest.approx(10.75 - 2.0)  # centred on (10 + 11.5) / 2
    assert [c.text for c in w[5].captions] == ["c5", "c4", "c6", "c3", "c7"]
    dense = caps(*[(0.5 * i, 0.5 * i + 0.4) for i in range(20)])  # midpoints 0.5 s apart
    wd = caption_windows(dense, duration=12.0, window=4.0, min_window=3.2, k=5)
    # The rule spaces anchor midpoints by >= window/2 (edge windows are then shifted inside).
    anchors = [(dense[x.anchor].start + dense[x.anchor].end) / 2 for x in wd]
    assert all(b - a >= 2.0 - 1e-6 for a, b in zip(anchors, anchors[1:]))
    assert [x.anchor for x in wd] == [0, 4, 8, 12, 16]
    assert len(wd) < len(dense)


def test_caption_windows_short_video():
    c = caps((0.5, 2.0))
    assert caption_windows(c, duration=3.0, window=4.0, min_window=3.2, k=5) == []
    w = caption_windows(c, duration=3.5, window=4.0, min_window=3.2, k=5)
    assert len(w) == 1 and w[0].start == 0.0 and w[0].end == 3.5


def test_clamp_captions_out_of_range():
    c = caps((1, 2), (8, 12), (15, 16))
    kept, notes = clamp_captions(c, 10.0, "v", "p")
    assert [(x.start, x.end) for x in kept] == [(1, 2), (8, 10.0)]
    assert len(notes) == 2 and all(not n.fatal for n in notes)
    assert "after the video ends" in notes[1].reason


def test_segment_windows():
    w = segment_windows(10.0, 4.0, 3.2)
    assert [(x.start, x.end) for x in w] == [(0.0, 4.0), (6.0, 10.0)]
    w = segment_windows(12.0, 4.0, 3.2)
    assert [(x.start, x.end) for x in w] == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]
    assert [(x.start, x.end) for x in segment_windows(5.0, 4.0, 3.2)] == [(0.5, 4.5)]
    assert segment_windows(3.0, 4.0, 3.2) == []


def test_segment_windows_cover_the_whole_clip():
    """audioset_windows=cover: no second of a 10 s clip is left out (fit leaves 4-6 s)."""
    w = segment_windows(10.0, 4.0, 3.2, cover=True)
    assert [(x.start, x.end) for x in w] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert segment_windows(12.0, 4.0, 3.2, cover=True) == segment_windows(12.0, 4.0, 3.2)
    w = segment_windows(10.0, 4.0, 3.2, offset=30.0, cover=True)
    covered = sorted((x.start, x.end) for x in w)
    assert covered[0][0] == 30.0 and covered[-1][1] == 40.0
    assert all(a[1] >= b[0] for a, b in zip(covered, covered[1:]))  # no gap


def test_no_two_windows_share_a_start():
    # Shorter than a window: every window would be the whole video (the same sample key).
    c = caps((0.5, 1.0), (2.5, 3.0))
    w = caption_windows(c, duration=3.5, window=4.0, min_window=3.2, k=5)
    assert [(x.start, x.end, x.anchor) for x in w] == [(0.0, 3.5, 0)]
    # Near the end: both anchors' windows shift onto [16, 20].
    c = caps((17.8, 18.4), (19.7, 20.0))
    w = caption_windows(c, duration=20.0, window=4.0, min_window=3.2, k=5)
    assert [(x.start, x.end) for x in w] == [(16.0, 20.0)]
    assert [x.text for x in w[0].captions] == ["c0", "c1"]


def test_segment_range_of_cut_clips_and_whole_videos():
    assert segment_range(10.0, 30.0, 40.0) == (0.0, 10.0)  # the cut segment
    assert segment_range(10.4, 30.0, 40.0) == (0.0, 10.4)  # cut at a keyframe, a bit long
    assert segment_range(300.0, 30.0, 40.0) == (30.0, 40.0)  # the whole YouTube video
    assert segment_range(39.8, 30.0, 40.0) == (30.0, 39.8)  # ends just before the segment end
    reason = segment_range(20.0, 30.0, 40.0)
    assert isinstance(reason, str) and "neither the cut segment nor the whole video" in reason
    w = segment_windows(10.0, 4.0, 3.2, offset=30.0)
    assert [(x.start, x.end) for x in w] == [(30.0, 34.0), (36.0, 40.0)]
