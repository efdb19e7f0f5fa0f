"""HowTo100M caption.json and AudioSet segments CSV parsing: good entries kept, bad ones recorded."""

import json

from preprocessing.sources import read_audioset, read_howto100m

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=2, num_positives=4\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def touch_videos(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")
    return folder


def test_howto100m_good_and_bad_entries(tmp_path):
    videos = touch_videos(tmp_path / "v", "good.mp4", "other.webm", "orphan.mkv", "badlen.mp4")
    captions = {
        "good": {
            "start": [5.0, -1.0, 1.0, 3.0],
            "end": [6.0, 0.5, 2.0, 2.0],
            "text": ["b", "neg", "a", "backwards"],
        },
        "other": {"start": [1.0, 2.0], "end": [2.0, 3.0], "text": ["  ", "kept  words"]},
        "missing": {"start": [1.0], "end": [2.0], "text": ["no file"]},
        "badlen": {"start": [1.0, 2.0], "end": [2.0], "text": ["x", "y"]},
    }
    (tmp_path / "caption.json").write_text(json.dumps(captions))
    inputs, errors = read_howto100m(videos, tmp_path / "caption.json")
    by_id = {v.video_id: v for v in inputs}
    assert sorted(by_id) == ["good", "other"]
    good = by_id["good"]
    assert [(c.text, c.start, c.end) for c in good.captions] == [
        ("neg", 0.0, 0.5),
        ("a", 1.0, 2.0),
        ("b", 5.0, 6.0),
    ]
    assert [c.text for c in by_id["other"].captions] == ["kept words"]
    assert any(
        e.video_id == "good" and "negative start" in e.reason and not e.fatal for e in errors
    )
    assert any(
        e.video_id == "good" and "not after start" in e.reason and not e.fatal for e in errors
    )
    assert any(e.video_id == "other" and "empty text" in e.reason and not e.fatal for e in errors)
    assert any(
        e.video_id == "missing" and e.stage == "input" and "missing video" in e.reason and e.fatal
        for e in errors
    )
    assert any(
        e.video_id == "badlen" and "lengths differ (2/1/2)" in e.reason and e.fatal for e in errors
    )
    assert any(
        e.video_id == "orphan" and "no caption entry" in e.reason and not e.fatal for e in errors
    )


def test_howto100m_unreadable_caption_files(tmp_path):
    videos = touch_videos(tmp_path / "v", "a.mp4")
    (tmp_path / "latin1.json").write_bytes('{"a": {"text": ["caf\xe9"]}}'.encode("latin-1"))
    (tmp_path / "broken.json").write_text('{"a": {"start": [1.0], ')
    (tmp_path / "list.json").write_text("[1, 2]")
    for name, expect in [
        ("latin1.json", "is not UTF-8"),
        ("broken.json", "is not valid JSON"),
        ("list.json", "top level must be an object"),
        ("absent.json", "cannot read"),
    ]:
        inputs, errors = read_howto100m(videos, tmp_path / name)
        assert inputs == [] and len(errors) == 1, name
        assert expect in errors[0].reason and name in errors[0].reason and errors[0].fatal


def test_audioset_segments_and_both_file_namings(tmp_path):
    videos = touch_videos(tmp_path / "v", "aaa_30.000_40.000.mp4", "bbb.mp4", "ccc_5_15.mkv")
    rows = (
        'aaa, 30.000, 40.000, "/m/01,/m/02"\n'
        'bbb, 0.000, 10.000, "/m/02"\n'
        'ccc, 5.000, 15.000, "/m/01"\n'
        'ddd, 1.000, 11.000, "/m/01"\n'
        'eee, x, 10.000, "/m/01"\n'
        "fff, 10.000\n"
        'ggg, 10.000, 5.000, "/m/01"\n'
    )
    (tmp_path / "seg.csv").write_text(HEADER + rows)
    inputs, errors = read_audioset(videos, tmp_path / "seg.csv")
    assert [(v.video_id, v.clip_id, v.labels) for v in inputs] == [
        ("aaa", "aaa_30.000_40.000", ["/m/01", "/m/02"]),
        ("bbb", "bbb_0.000_10.000", ["/m/02"]),
        ("ccc", "ccc_5.000_15.000", ["/m/01"]),
    ]
    assert inputs[2].path.endswith("ccc_5_15.mkv")
    msgs = [e.reason for e in errors]
    assert any("missing clip file" in m and "ddd" in m for m in msgs)
    assert any("line 8: start/end are not numbers" in m for m in msgs)
    assert any("line 9: expected 4 fields, got 2" in m for m in msgs)
    assert any("line 10: bad segment" in m for m in msgs)


def test_audioset_wrong_header(tmp_path):
    videos = touch_videos(tmp_path / "v", "a.mp4")
    (tmp_path / "noheader.csv").write_text('a, 0.0, 10.0, "/m/01"\n')
    (tmp_path / "wrongcols.csv").write_text("# a\n# b\n# YTID, start, end, labels\n")
    for name, expect in [
        ("noheader.csv", "three '#' header lines"),
        ("wrongcols.csv", "third header line"),
    ]:
        inputs, errors = read_audioset(videos, tmp_path / name)
        assert inputs == [] and len(errors) == 1 and expect in errors[0].reason
