"""Hostile or broken shards: `vatt inspect` lists every bad sample with its reason and exits 1,
never with a traceback; the training loader skips the same samples with the same reasons.
Nothing a header claims (10^11 audio samples, 30000x30000 pixels, a huge member inside a gzip
stream named .tar) is allocated."""

from __future__ import annotations

import json
from itertools import islice

import pytest
from conftest import write_hostile_shards

from pipeline.cli import main
from preprocessing import shard_format

MEMBER_LIMIT = 4 << 20  # the reader's member cap in these tests (the real one is 256 MiB)


@pytest.fixture()
def hostile(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_format, "MAX_MEMBER_BYTES", MEMBER_LIMIT)
    return tmp_path / "shards", *write_hostile_shards(tmp_path / "shards", MEMBER_LIMIT)


def test_inspect_lists_bad_samples_with_a_reason_and_exits_1(hostile, capsys):
    folder, good, expected = hostile
    assert main(["inspect", str(folder), "--limit", "0", "--json"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert [json.loads(line)["key"] for line in out.splitlines()] == good
    bad = dict(line.removeprefix("bad ").split(": ", 1) for line in err.splitlines()[:-1])
    assert set(bad) == set(expected), err
    for where, words in expected.items():
        assert words in bad[where], (where, bad[where])
    assert err.splitlines()[-1] == f"3 shard(s), 2 sample(s) read, {len(expected)} bad"


def test_inspect_of_good_shards_exits_0(tmp_path, capsys):
    import webdataset as wds
    from conftest import make_sample

    with wds.TarWriter(str(tmp_path / "ok-000000.tar")) as w:
        w.write({"__key__": "fine", **make_sample("fine")})
    assert main(["inspect", str(tmp_path)]) == 0
    assert "1 sample(s) read, 0 bad" in capsys.readouterr().err


def test_the_loader_skips_the_same_samples_with_the_same_reasons(hostile):
    from training.data.loader import ClipShape, DataConfig, build_loader

    folder, good, expected = hostile
    data = DataConfig(audioset=str(folder), loader_workers=0, shuffle_buffer=1)
    shape = ClipShape(frames=8, height=64, width=64, audio_samples=6400)
    loader = build_loader(data, shape, batch_size=1, rank=0, world_size=1, seed=0)
    batches = list(islice(iter(loader), 4))  # two passes over the 3 shards
    assert sorted({k for b in batches for k in b["keys"]}) == good
    skipped = [line for b in batches for line in b["skipped_keys"]]
    for where, words in expected.items():
        # Shard-level problems name the shard (and key); a sample's own, its key.
        key = where.rsplit(".tar:", 1)[-1]
        found = [line for line in skipped if line.startswith((where, f"{key}: "))]
        assert found and all(words in line for line in found), (where, skipped)
