"""The training loader on real shards (the session's `sample_shards`) and the augmentation
ops on hand-made frames: batch contract, temporal crop in sync with audio, captions, source
mixing, rank/worker splits, seeding, corrupt samples, and the clip arithmetic's errors."""

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from preprocessing.shard_format import (
    decode_h264,
    decode_sample,
    iter_samples,
    list_shards,
    members,
)
from preprocessing.vocab import load_tokenizer
from training.data.augment import (
    AugmentConfig,
    adjust_hue,
    audio_to_float,
    augment_batch,
    augment_clip,
    crop_resize_flip_u8,
    draw_clip_params,
    pool_audio,
    random_resized_crop_box,
    yuv_to_rgb_u8,
)
from training.data.loader import ClipShape, DataConfig, build_loader, clip_strides, finish_batch
from training.model import make_config

DEBUG = ClipShape.from_model(make_config("debug"))  # 8 x 64 x 64, 6400 samples
FULL_T = ClipShape(frames=32, height=64, width=64, audio_samples=153_600)  # stride 1 / 1
NO_AUG = AugmentConfig(
    crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), flip=False,
    brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, audio_noise=0.0,
)  # fmt: skip


def _data(shards, **kw) -> DataConfig:
    kw.setdefault("howto100m", str(shards["howto100m"]))
    kw.setdefault("audioset", str(shards["audioset"]))
    kw.setdefault("loader_workers", 0)
    kw.setdefault("shuffle_buffer", 4)
    return DataConfig(**kw)


def _batches(data, shape=DEBUG, n=1, batch_size=4, rank=0, world_size=1, seed=0, step=0):
    loader = build_loader(
        data, shape, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed,
        start_step=step,
    )  # fmt: skip
    return [finish_batch(b, data.augment) for b in islice(iter(loader), n)]


@pytest.fixture(scope="module")
def raw(sample_shards) -> dict[str, dict]:
    """Every raw sample of the sample shards by key (member -> bytes)."""
    out = {}
    for src in ("howto100m", "audioset"):
        out.update({s["__key__"]: s for s in iter_samples(list_shards(str(sample_shards[src])))})
    return out


# ---- the batch contract ----


def test_debug_batch_contract(sample_shards, raw):
    (b,) = _batches(_data(sample_shards), n=1, batch_size=6)
    assert b["video"].shape == (6, 8, 64, 64, 3) and b["video"].dtype == torch.float32
    assert b["audio"].shape == (6, 6400) and b["audio"].dtype == torch.float32
    assert b["text_ids"].shape == (6, 5, 16) and b["text_ids"].dtype == torch.int64
    assert b["text_mask"].shape == (6, 5) and b["text_mask"].dtype == torch.float32
    assert b["audio_mask"].shape == (6,) and b["audio_mask"].dtype == torch.float32
    assert b["source"].shape == (6,) and b["source"].dtype == torch.int64
    assert -1 <= b["video"].min() < b["video"].max() <= 1
    assert -1 <= b["audio"].min() < b["audio"].max() <= 1
    assert b["video"].std() > 0.05 and b["audio"].abs().max() > 0.01  # real content
    assert (b["skipped"], b["skipped_keys"]) == (0, [])
    assert len(b["keys"]) == 6 and all(k in raw for k in b["keys"])
    for key, src, amask in zip(b["keys"], b["source"], b["audio_mask"]):
        meta = json.loads(raw[key]["json"])
        assert ["howto100m", "audioset"][src] == meta["source"]
        assert amask == meta["audio_mask"]


@pytest.mark.parametrize("shape", [DEBUG, FULL_T], ids=["8-frames", "32-frames"])
def test_temporal_crop_is_a_strided_span_in_sync_with_audio(sample_shards, raw, shape):
    """With augmentation off, each clip equals frames start, start+s, ... of its window and
    the pooled audio from start / fps seconds on, for one random start."""
    data = _data(sample_shards, audioset="", augment=NO_AUG)
    (b,) = _batches(data, shape, n=1, batch_size=3)
    fs, as_ = clip_strides(3.2, shape, 10.0, 48_000)
    assert (fs, as_) == ((4, 24) if shape.frames == 8 else (1, 1))
    span, need = shape.frames * fs, shape.audio_samples * as_
    for i, key in enumerate(b["keys"]):
        full = decode_sample(raw[key])
        n = full["video"].shape[0]
        assert n == 40  # 4 s windows at 10 fps
        matches = []
        for start in range(n - span + 1):
            a0 = start * 4800
            audio = pool_audio(audio_to_float(full["audio"][a0 : a0 + need]), as_)
            if not torch.equal(audio, b["audio"][i]):
                continue
            frames = full["video"][start : start + span : fs]
            video, _ = augment_clip(
                frames, audio, NO_AUG, shape.height, shape.width, torch.Generator()
            )
            # The loader resizes in uint8 (H.264: inside FFmpeg, swscale bilinear): a few /255
            # on average from the float path.
            matches.append(float((video - b["video"][i]).abs().mean()) < 0.04)
        assert any(matches), f"{key}: no start gives this clip's audio and frames"


def test_clip_longer_than_the_window_is_padded(sample_shards):
    """4.8 s of 8 frames (stride 6) from 4 s windows: frames 0, 6, ..., 36 then the last one
    again; the audio after the window's end is silence."""
    data = _data(sample_shards, howto100m="", clip_seconds=4.8, augment=NO_AUG)
    assert clip_strides(4.8, DEBUG, 10.0, 48_000) == (6, 36)
    (b,) = _batches(data, n=1, batch_size=2)
    assert torch.equal(b["video"][:, -1], b["video"][:, -2])
    assert not torch.equal(b["video"][:, 0], b["video"][:, 1])
    tail = (230_400 - 192_000) // 36  # pooled samples past the end of the 4 s window
    assert not b["audio"][:, -tail:].any() and b["audio"][:, : -tail - 1].abs().amax(1).gt(0).all()


def test_captions_round_trip_through_the_tokenizer(sample_shards, raw):
    tok = load_tokenizer(sample_shards["tokenizer"])
    data = _data(sample_shards, audioset="", num_captions=5, max_words=4)
    batches = _batches(data, n=3, batch_size=4)
    seen_mask = 0
    for b in batches:
        for key, ids, mask in zip(b["keys"], b["text_ids"], b["text_mask"]):
            meta = json.loads(raw[key]["json"])
            caps = meta["captions"]
            for k in range(5):
                words = [tok.id_to_token(int(i)) for i in ids[k] if i != 0]
                expected = caps[k]["text"].lower().split()[:4] if k < len(caps) else []
                assert words == expected, (key, k)
                assert mask[k] == float(k < len(caps) and meta["text_mask"] == 1)
            seen_mask += int(mask.sum())
    assert seen_mask > 0


def test_audioset_has_no_text(sample_shards):
    # Both sources set but weight 0 for HowTo100M, and AudioSet alone (no tokenizer at all).
    for data in (
        _data(sample_shards, howto100m_weight=0.0),
        _data(sample_shards, howto100m=""),
    ):
        (b,) = _batches(data, n=1, batch_size=8)
        assert (b["source"] == 1).all()
        assert not b["text_ids"].any() and not b["text_mask"].any()


def test_source_weights(sample_shards):
    (only_h,) = _batches(_data(sample_shards, audioset_weight=0.0), n=1, batch_size=16)
    assert (only_h["source"] == 0).all()
    assert only_h["text_mask"].any()
    both = _batches(_data(sample_shards), n=4, batch_size=16)
    sources = torch.cat([b["source"] for b in both])
    # 64 fair draws: each source appears, and neither dominates wildly.
    assert 12 <= int((sources == 0).sum()) <= 52


# ---- splitting, repetition, seeding ----


def _first_pass_share(folder: Path, consumers: int) -> int:
    """Samples every consumer surely reads before its first pass ends."""
    sizes = [
        json.loads(Path(t).with_suffix(".stats.json").read_text())["samples"]
        for t in list_shards(str(folder))
    ]
    return min(sizes) if len(sizes) >= consumers else sum(sizes) // consumers


@pytest.mark.parametrize("source", ["howto100m", "audioset"])
def test_ranks_read_disjoint_samples(sample_shards, source):
    other = {"howto100m": "audioset", "audioset": "howto100m"}[source]
    data = _data(sample_shards, shuffle_buffer=1, **{f"{other}_weight": 0.0})
    k = _first_pass_share(sample_shards[source], 2)
    assert k >= 4
    keys = [
        [key for b in _batches(data, n=k, batch_size=1, rank=r, world_size=2) for key in b["keys"]]
        for r in (0, 1)
    ]
    assert len(set(keys[0])) == len(set(keys[1])) == k  # no repeats within the first pass
    assert not set(keys[0]) & set(keys[1])


def test_worker_processes_split_and_batch(sample_shards):
    """2 ranks x 2 DataLoader workers: 4 consumers with distinct first-pass samples, batches
    assembled in the workers."""
    data = _data(sample_shards, audioset_weight=0.0, shuffle_buffer=1, loader_workers=2)
    k = _first_pass_share(sample_shards["howto100m"], 4)
    per_rank = []
    for r in (0, 1):
        batches = _batches(data, n=2 * k, batch_size=1, rank=r, world_size=2)
        assert batches[0]["video"].shape == (1, 8, 64, 64, 3)
        per_rank.append([key for b in batches for key in b["keys"]])
    assert all(len(set(keys)) == 2 * k for keys in per_rank)
    assert not set(per_rank[0]) & set(per_rank[1])


def test_loader_is_infinite_and_seeded(sample_shards, raw):
    data = _data(sample_shards, howto100m="", shuffle_buffer=8)
    n_samples = sum(json.loads(s["json"])["source"] == "audioset" for s in raw.values())
    n = n_samples // 4 + 2  # more batches of 4 than one pass holds
    a = _batches(data, n=n, batch_size=4, seed=1)
    b = _batches(data, n=n, batch_size=4, seed=1)
    c = _batches(data, n=n, batch_size=4, seed=1, step=500)  # a resumed run
    keys = [[k for x in run for k in x["keys"]] for run in (a, b, c)]
    assert len(keys[0]) > n_samples  # went past the end of the corpus
    assert keys[0] == keys[1] and torch.equal(a[0]["video"], b[0]["video"])
    assert keys[0] != keys[2]


# ---- corrupt data ----


def _good_howto(raw: dict) -> tuple[str, dict, str, str]:
    """A HowTo100M sample of the sample shards: (key, its members, video ext, audio ext)."""
    key = next(k for k, s in raw.items() if json.loads(s["json"])["source"] == "howto100m")
    video, audio = members(json.loads(raw[key]["json"]))
    return key, {m: raw[key][m] for m in ("json", video, audio)}, video, audio


def _write_corrupt_shard(raw: dict, folder: Path) -> tuple[str, dict[str, str]]:
    """One good sample and five broken ones in one tar; returns the good key and
    {bad key: expected words of its reason}."""
    good_key, good, video, audio = _good_howto(raw)
    meta = json.loads(good["json"])
    bad = {
        "bad_video": ({**good, video: b"\x00\x00\x00\x18ftypmp42 not a video " * 100}, "video"),
        "bad_audio": ({**good, audio: b"OggS garbage"}, "audio"),
        "bad_json": ({**good, "json": b"{not json"}, "metadata is not valid JSON"),
        "no_audio": ({"json": good["json"], video: good[video]}, f"missing member .{audio}"),
        "bad_codec": (
            {**good, "json": json.dumps(dict(meta, video_codec="vp9")).encode()},
            "video_codec",
        ),
    }
    folder.mkdir(parents=True)
    with wds.TarWriter(str(folder / "broken-000000.tar")) as w:
        w.write({"__key__": good_key, **good})
        for key, (sample, _) in bad.items():
            w.write({"__key__": key, **sample})
    return good_key, {k: why for k, (_, why) in bad.items()}


def test_corrupt_samples_are_skipped_counted_and_reported(sample_shards, raw, tmp_path):
    good_key, bad = _write_corrupt_shard(raw, tmp_path / "broken")
    data = DataConfig(
        howto100m=str(tmp_path / "broken"), tokenizer=str(sample_shards["tokenizer"]),
        loader_workers=0, shuffle_buffer=1,
    )  # fmt: skip
    batches = _batches(data, n=3, batch_size=1)
    for b in batches:  # every pass: the good clip, and each bad one skipped once
        assert b["keys"] == [good_key]
        assert b["skipped"] == len(bad) == len(b["skipped_keys"])
        reasons = dict(line.split(": ", 1) for line in b["skipped_keys"])
        assert set(reasons) == set(bad)
        for key, why in bad.items():
            assert why in reasons[key] and "\n" not in reasons[key]


def test_one_garbage_video_is_skipped_and_training_goes_on(sample_shards, raw, tmp_path):
    good_key, good, video, _ = _good_howto(raw)
    folder = tmp_path / "one_bad"
    folder.mkdir()
    with wds.TarWriter(str(folder / "s-000000.tar")) as w:
        w.write({"__key__": good_key, **good})
        # Right byte count, wrong bytes: the decoder must reject it.
        w.write({"__key__": "garbage_clip", **good, video: bytes(len(good[video]))})
    data = DataConfig(howto100m=str(folder), tokenizer=str(sample_shards["tokenizer"]),
                      loader_workers=0, shuffle_buffer=1)  # fmt: skip
    batches = _batches(data, n=4, batch_size=1)
    assert [b["skipped"] for b in batches] == [1, 1, 1, 1]
    assert all(b["skipped_keys"][0].startswith("garbage_clip: ") for b in batches)
    assert all(b["video"].shape == (1, 8, 64, 64, 3) for b in batches)


def test_unreadable_shard_is_reported_not_fatal(sample_shards, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    real = list_shards(str(sample_shards["audioset"]))[0]
    (folder / "a-000000.tar").symlink_to(real)
    (folder / "a-000001.tar").write_bytes(b"this is not a tar file" * 64)
    data = DataConfig(audioset=str(folder), loader_workers=0, shuffle_buffer=1)
    batches = _batches(data, n=8, batch_size=4)
    lines = [line for b in batches for line in b["skipped_keys"]]
    assert lines and all("a-000001.tar" in line for line in lines)
    assert all(b["video"].shape[0] == 4 for b in batches)


# ---- the clip arithmetic ----


def test_clip_seconds_that_do_not_fit_the_model_are_a_clear_error(sample_shards):
    with pytest.raises(ValueError, match="not a whole multiple of the model's audio_samples"):
        _batches(_data(sample_shards, clip_seconds=3.0), n=1)  # 144000 / 6400 = 22.5
    with pytest.raises(ValueError, match="fewer than the model's 64"):
        clip_strides(3.2, ClipShape(64, 64, 64, 6400), 10.0, 48_000)
    assert clip_strides(3.2, DEBUG, 10.0, 48_000) == (4, 24)
    assert clip_strides(3.2, FULL_T, 10.0, 48_000) == (1, 1)


# ---- augmentation ----


def _frames(t=4, h=48, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _split_augment(frames, audio, cfg, height, width, gen):
    """The loader's split transform of one clip: uint8 crop/resize/flip as in a loader worker,
    then the batched device half (here on the CPU) on a batch of one. Audio goes in float
    like augment_clip's and is handed over as int16, as the loader does."""
    params = draw_clip_params(frames.shape[1], frames.shape[2], cfg, gen)
    video = crop_resize_flip_u8(frames, params, height, width)
    pcm = audio.mul(32768).round().clamp(-32768, 32767).to(torch.int16)
    video, out = augment_batch(
        video[None], pcm[None], torch.tensor([params.jitter]),
        torch.tensor([params.noise_seed]), cfg,
    )  # fmt: skip
    return video[0], out[0]


# Every augmentation test runs on augment_clip (float, one clip) and on the loader's path.
PATHS = {"clip": augment_clip, "device": _split_augment}
AUDIO_ATOL = {"clip": 0.0, "device": 1 / 32768}  # the device path's audio went through int16


@pytest.mark.parametrize("path", PATHS)
def test_augment_is_deterministic_per_generator_and_in_range(path):
    frames, audio = _frames(h=60, w=80), torch.linspace(-0.5, 0.5, 1000)
    cfg = AugmentConfig()
    runs = [
        PATHS[path](frames, audio, cfg, 32, 32, torch.Generator().manual_seed(s)) for s in (7, 7, 8)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    np_runs = [PATHS[path](frames, audio, cfg, 32, 32, np.random.default_rng(3)) for _ in "ab"]
    assert torch.equal(np_runs[0][0], np_runs[1][0])
    video, noisy = runs[0]
    assert video.shape == (4, 32, 32, 3) and video.dtype == torch.float32
    assert -1 <= video.min() and video.max() <= 1 and noisy.abs().max() <= 1
    # Noise std = 0.01 * max|x| = 0.005.
    assert 0.003 < float((noisy - audio).std()) < 0.007


@pytest.mark.parametrize("path", PATHS)
def test_zero_strength_augmentation_is_identity(path):
    frames, audio = _frames(), torch.linspace(-1, 1, 64)
    video, out = PATHS[path](frames, audio, NO_AUG, 48, 48, torch.Generator().manual_seed(0))
    expected = torch.from_numpy(frames).float() / 255 * 2 - 1
    assert torch.allclose(video, expected, atol=1e-6)
    assert torch.allclose(out, audio, atol=AUDIO_ATOL[path], rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_flip_mirrors_the_clip(path):
    frames = _frames()
    base = torch.from_numpy(frames).float() / 255 * 2 - 1
    flip_cfg = AugmentConfig(**{**NO_AUG.__dict__, "flip": True})
    seen = set()
    for s in range(16):
        video, _ = PATHS[path](frames, torch.zeros(8), flip_cfg, 48, 48, np.random.default_rng(s))
        if torch.allclose(video, base, atol=1e-6):
            seen.add("same")
        elif torch.allclose(video, base.flip(2), atol=1e-6):  # width axis, every frame
            seen.add("mirrored")
        else:
            pytest.fail("flip produced neither the clip nor its mirror image")
    assert seen == {"same", "mirrored"}


def test_crop_box_respects_area_and_aspect():
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_crop_box(240, 320, (0.2, 0.5), (0.75, 1.333), gen)
        assert 0 <= top and top + h <= 240 and 0 <= left and left + w <= 320
        assert 0.2 - 0.01 <= h * w / (240 * 320) <= 0.5 + 0.01
        assert 0.75 - 0.02 <= w / h <= 1.333 + 0.02
    # Impossible requests (a full-area square of a 4:3 frame) fall back to a centred crop.
    assert random_resized_crop_box(240, 320, (1.0, 1.0), (1.0, 1.0), gen) == (0, 40, 240, 240)


def _reference_hue(x: torch.Tensor, delta: float) -> torch.Tensor:
    """torchvision's adjust_hue, written out plainly: RGB -> HSV, rotate h, six-sextant table."""
    r, g, b = x.unbind(-3)
    maxc, minc = x.amax(-3), x.amin(-3)
    c = maxc - minc
    s = torch.where(c == 0, 0.0, c / torch.where(maxc == 0, 1.0, maxc))
    cs = torch.where(c == 0, 1.0, c)
    rc, gc, bc = (maxc - r) / cs, (maxc - g) / cs, (maxc - b) / cs
    h = (maxc == r) * (bc - gc)
    h = h + ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    h = h + ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder(h / 6.0 + delta, 1.0)
    i = torch.floor(h * 6.0)
    f, i = h * 6.0 - i, i.long() % 6
    v = maxc
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q)]
    return torch.stack(
        [sum(torch.where(i == j, ch[j], 0.0) for j in range(6)) for ch in table], dim=-3
    )


@pytest.mark.parametrize("path", PATHS)
def test_colour_jitter_ops(path):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[0, :, :4] = 0.5  # grey pixels
    x[1, 0, :4] = x[1, 1, :4]  # red == green ties
    for delta in (0.0, 0.1, -0.37, 0.5):
        assert torch.allclose(adjust_hue(x, delta), _reference_hue(x, delta), atol=1e-5)
    assert torch.allclose(adjust_hue(x, 0.0), x, atol=1e-6)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    cyan = adjust_hue(red, 0.5)[0, :, 0, 0]  # half a turn
    assert torch.allclose(cyan, torch.tensor([0.0, 1.0, 1.0]))
    # Brightness only: every frame scaled by one factor in [0.6, 1.4].
    frames = np.full((3, 16, 16, 3), 100, np.uint8)
    cfg = AugmentConfig(**{**NO_AUG.__dict__, "brightness": 0.4})
    video, _ = PATHS[path](frames, torch.zeros(4), cfg, 16, 16, torch.Generator().manual_seed(1))
    level = (video + 1) / 2 * 255
    assert torch.allclose(level, level.flatten()[0].expand_as(level), atol=1e-3)
    assert 60 - 1e-3 <= float(level.flatten()[0]) <= 140 + 1e-3


def test_device_path_draws_what_augment_clip_draws_and_differs_by_uint8_rounding():
    """Same generator seed -> the same crop, flip and jitter factors on both paths (the draws
    are made in the same order), so the distribution is the spec's; the only difference is
    the resized crop rounded to uint8 before the jitter. Measured here over random clips:
    the mean absolute difference stays under 1/255 in [-1, 1] units; the waveform noise has
    the same std (it comes from a per-clip seed, not from the clip generator itself)."""
    cfg = AugmentConfig()
    diffs = []
    for seed in range(12):
        frames = _frames(t=3, h=72, w=128, seed=seed)
        audio = torch.linspace(-0.5, 0.5, 4000)
        a, noisy_a = augment_clip(frames, audio, cfg, 56, 56, torch.Generator().manual_seed(seed))
        b, noisy_b = _split_augment(frames, audio, cfg, 56, 56, torch.Generator().manual_seed(seed))
        diffs.append(float((a - b).abs().mean()))
        assert float((a - b).abs().amax()) < 0.2  # same box/flip/jitter: no gross difference
        assert abs(float((noisy_a - audio).std()) - float((noisy_b - audio).std())) < 5e-4
    assert max(diffs) < 1 / 255, diffs


def test_augment_batch_is_per_clip():
    """A batch of two clips gives each clip what it gets alone (its own factors and noise)."""
    cfg = AugmentConfig()
    video = torch.from_numpy(np.stack([_frames(seed=1), _frames(seed=2)]))
    audio = torch.randint(-5000, 5000, (2, 960), dtype=torch.int16)
    jitter = torch.tensor([[1.3, 0.7, 1.2, 0.05], [0.8, 1.1, 0.6, -0.08]])
    seeds = torch.tensor([11, 12])
    both = augment_batch(video, audio, jitter, seeds, cfg, audio_stride=3)
    assert both[0].shape == (2, 4, 48, 48, 3) and both[1].shape == (2, 320)
    for i in range(2):
        one = augment_batch(video[i : i + 1], audio[i : i + 1], jitter[i : i + 1],
                            seeds[i : i + 1], cfg, audio_stride=3)  # fmt: skip
        assert torch.allclose(one[0][0], both[0][i], atol=1e-6)
        assert torch.equal(one[1][0], both[1][i])
    assert not torch.allclose(both[0][0], both[0][1])


def _noise_h264(h=96, w=128, frames=12, luma=(40, 200), chroma=(100, 156)) -> bytes:
    """An H.264 member of per-pixel noise planes (no smooth chroma to hide behind), in ranges
    that keep its RGB inside [0, 255]."""
    from preprocessing.encode import encode_h264

    rng = np.random.default_rng(0)
    planes = []
    for _ in range(frames):
        p = np.empty((h * 3 // 2, w), np.uint8)  # yuv420p: Y rows, then Cb and Cr
        p[:h] = rng.integers(*luma, (h, w))
        p[h:] = rng.integers(*chroma, (h // 2, w))
        planes.append(p)
    return encode_h264(planes, w, h, 10.0)


def test_yuv_planes_convert_on_the_device_to_the_decoders_rgb():
    """The YUV hand-off (planes cropped and resized in the decoder, `yuv_to_rgb` later on the
    device, flipped there) against swscale's RGB in the decoder, on noise. 4:2:0 without a
    resize and 4:4:4 with one: the same colours to rounding (one chroma siting, one matrix;
    a crop at odd offsets too). 4:2:0 with a resize keeps chroma at half the output size: it
    loses chroma detail (large per pixel on chroma noise), and only that: luma and each
    frame's mean colour stay the decoder's."""
    member = _noise_h264()

    def both(pix_fmt, box, size, flip):
        args = dict(frames=slice(2, 10), num_frames=12, crop=box, out_size=size)
        rgb = decode_h264(member, flip=flip, **args).astype(np.float64)
        y, uv = decode_h264(member, pix_fmt=pix_fmt, **args)
        assert uv.shape[-2:] == ((size[0] // 2, size[1] // 2) if pix_fmt == "yuv420p" else size)
        got = yuv_to_rgb_u8(torch.from_numpy(y), torch.from_numpy(uv), flip).numpy()
        return got.astype(np.float64), rgb

    luma = np.array([0.299, 0.587, 0.114])
    for flip in (False, True):
        for pix_fmt, box in (("yuv420p", (8, 10, 64, 64)), ("yuv420p", (7, 11, 64, 64)),
                             ("yuv444p", (8, 11, 71, 93))):  # fmt: skip
            got, rgb = both(pix_fmt, box, (64, 64), flip)
            assert np.abs(got - rgb).max() <= 2, (pix_fmt, box, flip)
        for box, size in (((0, 0, 96, 128), (48, 64)), ((8, 11, 71, 93), (64, 64))):
            got, rgb = both("yuv420p", box, size, flip)
            assert np.abs(got @ luma - rgb @ luma).max() < 2, (box, flip)
            assert np.abs(got.mean((1, 2)) - rgb.mean((1, 2))).max() < 0.5, (box, flip)
            assert np.abs(got - rgb).mean() > 2  # the chroma detail that 4:2:0 does lose


@pytest.mark.parametrize("handoff", ["yuv420", "yuv444"])
def test_yuv_handoff_batches_are_the_rgb_ones(sample_shards, handoff):
    """The default hand-off sends Y + CbCr planes and a flip flag per clip; after
    `finish_batch` the batch is the RGB hand-off's (same seed: same clips, crops, flips and
    jitter) to the colour conversion's rounding, with the same keys, shapes and dtypes."""
    shape = ClipShape(frames=8, height=48, width=64, audio_samples=6400)
    runs = {}
    for h in (handoff, "rgb"):
        data = _data(sample_shards, video_handoff=h)
        loader = build_loader(data, shape, batch_size=4, rank=0, world_size=1, seed=3)
        raw_b = next(iter(loader))
        runs[h] = (raw_b, finish_batch(raw_b, data.augment))
    yuv_raw, yuv = runs[handoff]
    rgb_raw, rgb = runs["rgb"]
    chroma = (24, 32) if handoff == "yuv420" else (48, 64)
    assert "video" not in yuv_raw and yuv_raw["video_y"].dtype == torch.uint8
    assert tuple(yuv_raw["video_y"].shape) == (4, 8, 48, 64)
    assert tuple(yuv_raw["video_uv"].shape) == (4, 8, 2, *chroma)
    assert yuv_raw["flip"].dtype == torch.bool and rgb_raw["video"].shape == (4, 8, 48, 64, 3)
    assert set(yuv) == set(rgb) and yuv["keys"] == rgb["keys"]
    assert yuv["video"].shape == rgb["video"].shape and yuv["video"].dtype == torch.float32
    assert torch.equal(yuv["audio"], rgb["audio"])
    # [-1, 1] units: 2/255 per level; the flat-colour sample clips leave only rounding.
    assert float((yuv["video"] - rgb["video"]).abs().mean()) < 2 / 255


def test_a_batch_mixing_jpeg_and_h264_clips_is_rgb(sample_shards, tmp_path):
    """v1 (JPEG) and v2 (H.264) shards in one run: a batch holding both kinds comes as RGB
    (the YUV clips converted in the loader worker), with the batch contract unchanged."""
    from conftest import make_sample

    folder = tmp_path / "v1"
    folder.mkdir()
    with wds.TarWriter(str(folder / "old-000000.tar")) as w:
        for i in range(4):
            w.write({"__key__": f"old{i}", **make_sample(f"old{i}", seed=i)})
    data = _data(sample_shards, audioset=str(folder))
    loader = build_loader(data, DEBUG, batch_size=8, rank=0, world_size=1, seed=0)
    kinds = set()
    for raw_b in islice(iter(loader), 6):
        old = [k.startswith("old") for k in raw_b["keys"]]
        if any(old) and not all(old):
            assert "video_y" not in raw_b and raw_b["video"].dtype == torch.uint8
            assert raw_b["video"].shape == (8, 8, 64, 64, 3)
            kinds.add("mixed")
        elif not any(old):
            assert "video_y" in raw_b
            kinds.add("h264")
        b = finish_batch(raw_b, data.augment)
        assert b["video"].shape == (8, 8, 64, 64, 3) and -1 <= b["video"].min()
    assert "mixed" in kinds


def test_a_v1_shard_trains_through_the_new_loader(tmp_path):
    """Schema v1 samples (JPEG frames + int16 .npy, as users have them) -> training batches."""
    from conftest import make_sample

    folder = tmp_path / "v1"
    folder.mkdir()
    with wds.TarWriter(str(folder / "old-000000.tar")) as w:
        for i in range(3):
            w.write({"__key__": f"old{i}", **make_sample(f"old{i}", seed=i)})
    raw = json.loads(make_sample("old0")["json"])
    assert raw["schema_version"] == 1 and "video_codec" not in raw
    data = DataConfig(audioset=str(folder), loader_workers=0, shuffle_buffer=1)
    batches = _batches(data, FULL_T, n=2, batch_size=2)
    for b in batches:
        assert b["video"].shape == (2, 32, 64, 64, 3) and b["video"].dtype == torch.float32
        assert b["audio"].shape == (2, 153_600) and b["audio"].dtype == torch.float32
        assert -1 <= b["video"].min() < b["video"].max() <= 1
        assert -1 <= b["audio"].min() < b["audio"].max() <= 1 and b["skipped"] == 0


def test_shards_and_tokenizer_by_uri(sample_shards):
    """Object-store URIs go through pyarrow.fs: listing, the tokenizer and opening shards (the
    guarded shard reader opens every URI through `storage.filesystem`). file:// exercises the
    same listing/reading code as s3:// without a server."""
    from preprocessing import storage

    local = list_shards(str(sample_shards["howto100m"]))
    uri = f"file://{sample_shards['howto100m']}"
    listed = list_shards(uri)
    assert [u.removeprefix("file://") for u in listed] == local
    with storage.open_input(listed[0]) as f:
        assert f.read() == Path(local[0]).read_bytes()
    data = DataConfig(howto100m=uri, loader_workers=0, shuffle_buffer=4)
    assert data.tokenizer_path() == f"{uri}/tokenizer.json"
    (batch,) = _batches(data, n=1, batch_size=2)
    assert batch["video"].shape == (2, 8, 64, 64, 3) and batch["text_mask"].sum() > 0
    missing = DataConfig(howto100m=f"file://{sample_shards['corpus']}", loader_workers=0)
    with pytest.raises(ValueError, match="no \\*.tar shards"):
        _batches(missing)
