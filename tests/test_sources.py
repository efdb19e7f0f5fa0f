"""HowTo100M caption.json and AudioSet segments CSV parsing: good entries kept, bad ones recorded."""

import json
import os
import unicodedata

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
        ("aaa", "aaa_30000_40000", ["/m/01", "/m/02"]),
        ("bbb", "bbb_0_10000", ["/m/02"]),
        ("ccc", "ccc_5000_15000", ["/m/01"]),
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


def test_byte_order_marks_are_accepted(tmp_path):
    # Windows editors and Excel save UTF-8 with a BOM; Python's json and csv reject it as is.
    videos = touch_videos(tmp_path / "v", "a.mp4", "bbbbbbbbbbb.mp4")
    entry = {"a": {"start": [1.0], "end": [2.0], "text": ["café au lait"]}}
    (tmp_path / "caption.json").write_bytes(json.dumps(entry).encode("utf-8-sig"))
    inputs, errors = read_howto100m(videos, tmp_path / "caption.json")
    assert [c.text for c in inputs[0].captions] == ["café au lait"]
    assert not [e for e in errors if e.fatal]
    csv_text = HEADER + 'bbbbbbbbbbb, 0.000, 10.000, "/m/01"\n'
    (tmp_path / "seg.csv").write_bytes(csv_text.encode("utf-8-sig"))
    inputs, errors = read_audioset(videos, tmp_path / "seg.csv")
    assert [v.video_id for v in inputs] == ["bbbbbbbbbbb"]
    assert [e.reason for e in errors] == ["clip file matches no segment row; skipped"]


def test_nothing_is_dropped_without_a_row(tmp_path):
    videos = touch_videos(
        tmp_path / "v", "twice.mp4", "twice.mkv", "phone.mov", "old.avi", "notes.m4a", "x.txt"
    )
    # An id listed twice: json.loads alone keeps only the last entry.
    (tmp_path / "caption.json").write_text(
        '{"twice": {"start": [1.0], "end": [2.0], "text": ["first"]},'
        ' "phone": {"start": [1.0, 2.0, 3.0, 4.0, 5.0], "end": [2.0, 3.0, 4.0, 5.0, 6.0],'
        '           "text": [42, null, ["word", "list"], {"a": 1}, 2.5]},'
        ' "old": {"start": [1.0], "end": [2.0], "text": ["avi"]},'
        ' "notes": {"start": [1.0], "end": [2.0], "text": ["audio only"]},'
        ' "twice": {"start": [1.0, 3.0], "end": [2.0, 4.0], "text": ["first", "second"]}}'
    )
    inputs, errors = read_howto100m(videos, tmp_path / "caption.json")
    by_id = {v.video_id: v for v in inputs}
    assert sorted(by_id) == ["old", "phone", "twice"]  # .mov and .avi are videos too
    assert [c.text for c in by_id["twice"].captions] == ["first", "second"]  # merged, once
    assert by_id["twice"].path.endswith("twice.mp4")
    assert [c.text for c in by_id["phone"].captions] == ["42", "word list", "2.5"]
    reasons = {(e.video_id, e.reason, e.fatal) for e in errors}
    assert (
        "twice",
        f"id listed 2 times in {tmp_path / 'caption.json'}; their captions are merged",
        False,
    ) in reasons
    assert ("twice", "2 files for one id: using twice.mp4, not twice.mkv", False) in reasons
    assert ("phone", "caption 0: text is a number (42), kept as text", False) in reasons
    assert ("phone", "caption 1: text is null, not a string; dropped", False) in reasons
    assert ("phone", "caption 2: text is a list of words, joined", False) in reasons
    assert ("phone", "caption 3: text is dict, not a string; dropped", False) in reasons
    (missing,) = [e for e in errors if e.video_id == "notes"]
    assert (
        missing.fatal
        and "found notes.m4a, whose extension is not in video_extensions" in missing.reason
    )
    # A custom extension list: .m4a accepted, .avi not.
    inputs, errors = read_howto100m(videos, tmp_path / "caption.json", (".mp4", ".m4a", ".mov"))
    assert sorted(v.video_id for v in inputs) == ["notes", "phone", "twice"]
    assert any(e.video_id == "old" and "found old.avi" in e.reason for e in errors)


def test_ids_match_file_names_in_either_unicode_form(tmp_path):
    # macOS writes file names decomposed (NFD); caption ids are usually composed (NFC).
    nfd = unicodedata.normalize("NFD", "café")
    videos = touch_videos(tmp_path / "v", f"{nfd}.mp4")
    (tmp_path / "caption.json").write_text(
        json.dumps({"café": {"start": [1.0], "end": [2.0], "text": ["x"]}}, ensure_ascii=False)
    )
    inputs, errors = read_howto100m(videos, tmp_path / "caption.json")
    assert [v.video_id for v in inputs] == ["café"] and not errors


def test_audioset_y_prefixed_files(tmp_path):
    # youtube-dl based AudioSet downloaders name files Y<YTID>[_<start>_<end>].<ext>.
    videos = touch_videos(tmp_path / "v", "Y--PJHxphWEs_30.000_40.000.mkv", "YAbCdEfGhIjK.mp4")
    rows = '--PJHxphWEs, 30.000, 40.000, "/m/01"\nAbCdEfGhIjK, 5.000, 15.000, "/m/02"\n'
    (tmp_path / "seg.csv").write_text(HEADER + rows)
    inputs, errors = read_audioset(videos, tmp_path / "seg.csv")
    assert [(v.video_id, os.path.basename(v.path)) for v in inputs] == [
        ("--PJHxphWEs", "Y--PJHxphWEs_30.000_40.000.mkv"),
        ("AbCdEfGhIjK", "YAbCdEfGhIjK.mp4"),
    ]
    assert not errors
