"""Held-out text->video retrieval: the metric on hand-made scores, the MSR-VTT CSV reader,
window decoding of real sample videos, and the whole evaluation on a real (debug) model and
on an oracle model whose right answers are known."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_clip
from torch import nn

from preprocessing.vocab import encode_captions, load_tokenizer
from training.eval.benchmarks import read_msrvtt
from training.eval.heldout import EvalConfig, HeldoutRetrieval
from training.eval.media import VideoDecodeError, decode_windows, to_model_input, window_starts
from training.eval.metrics import retrieval_metrics
from training.model import build_model

DEBUG_SHAPE = dict(frames=8, height=64, width=64)


# ---- retrieval_metrics ----


def test_metrics_identity_is_perfect_both_ways():
    m = retrieval_metrics(torch.eye(20), torch.arange(20))
    for d in ("t2v", "v2t"):
        assert m[f"{d}_r1"] == m[f"{d}_r5"] == m[f"{d}_r10"] == 1.0
        assert m[f"{d}_medr"] == m[f"{d}_meanr"] == 1.0
    assert (m["num_texts"], m["num_videos"]) == (20, 20)


def test_metrics_known_ranks_and_ties():
    n = 12
    # Every text scores video j as j: text i's own video i has n-1-i videos above it, so the
    # t2v ranks are n, n-1, ..., 1. Each video sees all texts tie (a constant column).
    sim = torch.arange(n, dtype=torch.float32).expand(n, n)
    m = retrieval_metrics(sim, torch.arange(n))
    assert m["t2v_r1"] == pytest.approx(1 / n)
    assert m["t2v_r5"] == pytest.approx(5 / n)
    assert m["t2v_r10"] == pytest.approx(10 / n)
    assert m["t2v_medr"] == m["t2v_meanr"] == 6.5  # ranks 1..12
    # Pessimistic ties: the other n-1 equal texts all rank ahead -> rank n for every video.
    assert m["v2t_r10"] == 0.0 and m["v2t_medr"] == n
    opt = retrieval_metrics(sim, torch.arange(n), ties="optimistic")
    assert opt["v2t_r1"] == 1.0 and opt["t2v_medr"] == 6.5

    # The transpose swaps the directions.
    t = retrieval_metrics(sim.T.contiguous(), torch.arange(n))
    assert t["v2t_medr"] == 6.5 and t["v2t_r5"] == pytest.approx(5 / n)
    assert t["t2v_medr"] == n


def test_metrics_several_texts_per_video_and_nan():
    # Texts 0, 1 -> video 0; text 2 -> video 1.
    sim = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1]))
    assert m["t2v_r1"] == pytest.approx(2 / 3)  # text 1 prefers video 1
    # Video 0 counts its best text (0.9 beats text 2's 0.3, though text 1's 0.2 would not);
    # video 1's only text (0.7) loses to text 1 (0.8): ranks 1 and 2.
    assert m["v2t_r1"] == 0.5 and m["v2t_medr"] == 1.5
    assert m["num_videos"] == 2

    # A diverged model must not look perfect: NaN scores rank last.
    nan = retrieval_metrics(torch.full((4, 4), float("nan")), torch.arange(4))
    assert nan["t2v_r1"] == nan["v2t_r1"] == 0.0 and nan["t2v_medr"] == 4


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(torch.eye(3), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="N_text"):
        retrieval_metrics(torch.eye(3), torch.arange(2))
    with pytest.raises(ValueError, match="ties"):
        retrieval_metrics(torch.eye(3), torch.arange(3), ties="average")


# ---- read_msrvtt ----


def _write_csv(
    path: Path, rows: list[list[str]], header=("key", "vid_key", "video_id", "sentence")
):
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_read_msrvtt_reports_missing_video_and_empty_sentence(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in ("video1", "video2", "video4"):
        (videos / f"{vid}.mp4").write_bytes(b"x")  # the reader only checks the file exists
    rows = [
        ["ret0", "msr1", "video1", "a man is cooking"],
        ["ret1", "msr3", "video3", "a dog runs"],  # no video3.mp4
        ["ret2", "msr2", "video2", "   "],  # empty sentence
        ["ret3", "msr4", "video4", "  two   cars race "],
    ]
    items, errors = read_msrvtt(_write_csv(tmp_path / "t.csv", rows), videos)
    assert [(i.key, i.video_id, i.sentence) for i in items] == [
        ("ret0", "video1", "a man is cooking"),
        ("ret3", "video4", "two cars race"),
    ]
    key, video_id, sentence, path = items[0]  # items unpack as the 4-tuples they are
    assert path == videos / "video1.mp4"
    assert len(errors) == 2
    assert errors[0].startswith("ret1: ") and "video3.mp4 not found" in errors[0]
    assert errors[1] == "ret2: empty sentence"


def test_read_msrvtt_bad_csv_names_the_file(tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", [["ret0", "a"]], header=("key", "sentence"))
    with pytest.raises(ValueError, match=r"bad\.csv.*video_id"):
        read_msrvtt(bad, tmp_path)
    with pytest.raises(ValueError, match=r"nope\.csv"):
        read_msrvtt(tmp_path / "nope.csv", tmp_path)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ValueError, match=r"bin\.csv"):
        read_msrvtt(binary, tmp_path)


# ---- decode_windows ----


def test_window_starts():
    assert window_starts(100, 29, 4) == [0, 24, 47, 71]  # first at 0, last ends at 100
    assert window_starts(100, 29, 1) == [35]  # one window: the centre
    assert window_starts(10, 29, 3) == [0, 0, 0]  # shorter than a window


def test_decode_windows_on_a_sample_video(sample_shards):
    path = sorted(Path(sample_shards["msrvtt_videos"]).glob("*.mp4"))[0]
    x = decode_windows(path, num_windows=4, clip_seconds=3.2, **DEBUG_SHAPE)
    assert x.shape == (4, 8, 64, 64, 3) and x.dtype == torch.uint8
    f = to_model_input(x)
    assert f.dtype == torch.float32 and -1.0 <= f.min() < f.max() <= 1.0
    # The sample videos have a moving shape: windows (and frames within one) differ.
    diffs = [(x[w].float() - x[0].float()).abs().mean().item() for w in range(1, 4)]
    assert min(diffs) > 0.5, diffs
    assert not torch.equal(x[0, 0], x[0, -1])


def test_decode_windows_short_and_portrait_videos(tmp_path):
    # 1 s at 10 fps = 10 frames, but a window spans 29 (8 frames, every 4th): pad with the last.
    short = decode_windows(
        make_clip(tmp_path / "short.mp4", 1, size="160x120", rate=10, audio=None),
        num_windows=3,
        clip_seconds=3.2,
        **DEBUG_SHAPE,
    )
    assert short.shape == (3, 8, 64, 64, 3)
    assert torch.equal(short[0], short[2])  # every window starts at frame 0
    assert all(torch.equal(short[0, 3], short[0, k]) for k in range(4, 8))  # frame 9 repeated
    assert not torch.equal(short[0, 0], short[0, 2])  # frames 0 and 8 of testsrc differ
    # Portrait input and a non-square crop: the shape is still the model's.
    tall = decode_windows(
        make_clip(tmp_path / "tall.mp4", 2, size="120x200", rate=25, audio=None),
        num_windows=2,
        clip_seconds=0.8,
        frames=4,
        height=32,
        width=48,
    )
    assert tall.shape == (2, 4, 32, 48, 3)


def test_decode_windows_corrupt_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VideoDecodeError) as err:
        decode_windows(junk, num_windows=2, clip_seconds=3.2, **DEBUG_SHAPE)
    assert "\n" not in str(err.value) and str(err.value)
    with pytest.raises(VideoDecodeError, match="not found"):
        decode_windows(tmp_path / "gone.mp4", num_windows=2, clip_seconds=3.2, **DEBUG_SHAPE)


# ---- HeldoutRetrieval ----


def _eval_cfg(sample_shards) -> EvalConfig:
    return EvalConfig(
        msrvtt_csv=str(sample_shards["msrvtt_csv"]),
        msrvtt_videos=str(sample_shards["msrvtt_videos"]),
        num_windows=4,
    )


@pytest.fixture(scope="module")
def heldout(sample_shards) -> HeldoutRetrieval:
    return HeldoutRetrieval(
        _eval_cfg(sample_shards),
        tokenizer=sample_shards["tokenizer"],
        clip_seconds=3.2,
        max_words=16,
        vocab_size=4096,
        workers=2,
        **DEBUG_SHAPE,
    )


def test_evaluate_debug_model_restores_modes(heldout, sample_shards):
    n = len(list(Path(sample_shards["msrvtt_videos"]).glob("*.mp4")))
    assert heldout.num_videos == len(heldout.items) == n and heldout.errors == []
    assert heldout.clips.shape == (n, 4, 8, 64, 64, 3)
    torch.manual_seed(0)
    model = build_model("debug")
    model.train()
    model.video_head.eval()  # a part deliberately in eval mode must stay so
    out = heldout.evaluate(model, batch_size=5)  # 5 does not divide 8 x 4 windows
    for key in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr", "v2t_r1", "v2t_r5", "v2t_r10"):
        assert key in out and np.isfinite(out[key])
    assert all(0.0 <= out[f"{d}_r{k}"] <= 1.0 for d in ("t2v", "v2t") for k in (1, 5, 10))
    assert 1 <= out["t2v_medr"] <= n
    assert (out["num_scored"], out["num_errors"]) == (n, 0)
    assert out["chance_r1"] == pytest.approx(1 / n)
    assert model.training and model.text_embed.training and not model.video_head.training
    # Evaluation is deterministic (eval mode: no DropToken, BN running stats).
    again = heldout.evaluate(model, batch_size=16)
    assert {k: again[k] for k in ("t2v_r1", "t2v_meanr")} == {
        k: out[k] for k in ("t2v_r1", "t2v_meanr")
    }


class OracleModel(nn.Module):
    """A test double for the model only: it recognises each clip and each caption (by exact
    comparison with independently decoded windows and tokenized sentences) and embeds it as
    the one-hot of its video id, so a correct scoring path must give R@1 = 1. `shift` points
    every caption at the next video instead, which must give R@1 = 0."""

    def __init__(self, windows: dict[str, torch.Tensor], captions: dict[str, str], tok, shift=0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # tells evaluate the device
        self.ids = sorted(windows)  # video_id -> one-hot position, independent of the module
        self.windows = {v: to_model_input(w) for v, w in windows.items()}  # [W, T, H, W, 3]
        self.captions = [  # (token row [L], video_id)
            (torch.from_numpy(encode_captions(tok, [s], 1, 16)[0]), v) for s, v in captions.items()
        ]
        self.shift = shift

    def _one_hot(self, video_id: str, shift: int = 0) -> torch.Tensor:
        i = (self.ids.index(video_id) + shift) % len(self.ids)
        return torch.nn.functional.one_hot(torch.tensor(i), len(self.ids)).float()

    def encode_video(self, video):  # [B, T, H, W, 3] float
        assert not self.training
        rows = []
        for clip in video:
            (vid,) = [v for v, w in self.windows.items() if any(torch.equal(clip, x) for x in w)]
            rows.append(self._one_hot(vid))
        return {"video_vt": torch.stack(rows)}

    def encode_text(self, text_ids):  # [B, L] int64
        rows = []
        for row in text_ids:
            (vid,) = [v for ids, v in self.captions if torch.equal(ids, row)]
            rows.append(self._one_hot(vid, self.shift))
        return {"text_vt": torch.stack(rows)}


@pytest.mark.parametrize("shift,expected_r1", [(0, 1.0), (1, 0.0)])
def test_evaluate_oracle_model_scores_exactly(sample_shards, tmp_path, shift, expected_r1):
    """Shuffled CSV order, a video with two sentences, a corrupt and a missing video: the
    oracle still gets every answer right, so the video/text/ground-truth alignment is right."""
    with open(sample_shards["msrvtt_csv"], encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    rows = rows[::-1][:5]
    # A second sentence for the first video, placed so that text i != video i afterwards.
    rows.insert(2, ["extra", rows[0][1], rows[0][2], "one more sentence about " + rows[0][3]])
    rows.append(["broken", "msr1", "video_broken", "a video that cannot be decoded"])
    rows.append(["absent", "msr2", "video_absent", "a video that is not there"])
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in {row[2] for row in rows[:6]}:
        os.symlink(Path(sample_shards["msrvtt_videos"]) / f"{vid}.mp4", videos / f"{vid}.mp4")
    (videos / "video_broken.mp4").write_bytes(b"\x00" * 1000)
    cfg = EvalConfig(
        msrvtt_csv=str(_write_csv(tmp_path / "test.csv", rows)),
        msrvtt_videos=str(videos),
        num_windows=2,
    )
    ret = HeldoutRetrieval(cfg, tokenizer=sample_shards["tokenizer"], **DEBUG_SHAPE)
    assert sorted(e.split(":")[0] for e in ret.errors) == ["absent", "broken"]

    windows = {
        vid: decode_windows(videos / f"{vid}.mp4", num_windows=2, clip_seconds=3.2, **DEBUG_SHAPE)
        for vid in {row[2] for row in rows[:6]}
    }
    captions = {sentence: vid for _, _, vid, sentence in rows[:6]}
    tok = load_tokenizer(sample_shards["tokenizer"])
    out = ret.evaluate(OracleModel(windows, captions, tok, shift), batch_size=3)
    assert out["t2v_r1"] == out["v2t_r1"] == expected_r1
    assert (out["num_scored"], out["num_videos"], out["num_errors"]) == (6, 5, 2)
    assert out["chance_r1"] == pytest.approx(1 / 5)
