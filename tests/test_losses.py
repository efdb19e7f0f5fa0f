"""Tests of NCE / MIL-NCE against a loop reference, masking, temperature and 2-rank exactness."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.objectives.vatt import LossConfig, gather_with_grad, mil_nce, nce, total_loss


def reference_mil_nce(video, text, tau, text_mask=None):
    """The spec's formula with plain loops, in float64, written independently of the library.

    loss_i = logsumexp({s[i,j,k]} U {s[j,i,k]}) - logsumexp_k s[i,i,k], s = cos / tau;
    captions with mask 0 are neither positives nor negatives; rows without text are dropped.
    """
    B, K, _ = text.shape
    video, text = video.detach(), text.detach()
    v = [video[i].double() / video[i].double().norm() for i in range(B)]
    t = [[text[j, k].double() / text[j, k].double().norm() for k in range(K)] for j in range(B)]
    if text_mask is None:
        valid = [[True] * K for _ in range(B)]
    elif text_mask.ndim == 1:
        valid = [[bool(text_mask[j] > 0)] * K for j in range(B)]
    else:
        valid = [[bool(text_mask[j, k] > 0) for k in range(K)] for j in range(B)]

    def s(i, j, k):  # clip i vs caption k of clip j
        return float(v[i] @ t[j][k]) / tau

    def lse(values):
        m = max(values)
        return m + math.log(sum(math.exp(x - m) for x in values))

    losses = []
    for i in range(B):
        if not any(valid[i]):
            continue
        terms = [s(i, j, k) for j in range(B) for k in range(K) if valid[j][k]]
        terms += [s(j, i, k) for j in range(B) for k in range(K) if valid[i][k]]
        positives = [s(i, i, k) for k in range(K) if valid[i][k]]
        losses.append(lse(terms) - lse(positives))
    return sum(losses) / len(losses) if losses else 0.0


def _inputs(B=6, K=5, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(B, D, generator=g, requires_grad=True)
    text = torch.randn(B, K, D, generator=g, requires_grad=True)
    return video, text


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_mil_nce_matches_loop_reference(tau):
    video, text = _inputs()
    got = mil_nce(video, text, tau).item()
    assert got == pytest.approx(reference_mil_nce(video, text, tau), abs=1e-5)


def test_nce_is_the_k1_case_and_matches_reference():
    video, text = _inputs(K=1)
    audio = text[:, 0]
    got = nce(video, audio, 0.07).item()
    assert got == pytest.approx(reference_mil_nce(video, text, 0.07), abs=1e-5)
    # Symmetric: both directions share the denominator, so swapping roles changes nothing.
    assert nce(audio, video, 0.07).item() == pytest.approx(got, abs=1e-5)


def test_temperature_scaling_follows_reference():
    video, text = _inputs(seed=1)
    a, b = mil_nce(video, text, 0.07).item(), mil_nce(video, text, 0.2).item()
    assert a != pytest.approx(b, abs=1e-3)
    assert b == pytest.approx(reference_mil_nce(video, text, 0.2), abs=1e-5)
    # Scale invariance: only the direction of the embeddings matters.
    assert mil_nce(3 * video, 0.5 * text, 0.07).item() == pytest.approx(a, abs=1e-5)


def test_row_mask_drops_rows_and_their_texts():
    video, text = _inputs(seed=2)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    got = mil_nce(video, text, 0.07, text_mask=mask).item()
    assert got == pytest.approx(reference_mil_nce(video, text, 0.07, mask), abs=1e-5)
    # Masked texts are not negatives: changing them changes nothing ...
    text2 = text.detach().clone()
    text2[1] = torch.randn_like(text2[1])
    assert mil_nce(video, text2, 0.07, text_mask=mask).item() == pytest.approx(got, abs=1e-6)
    # ... but a masked clip's video is still a negative for the other clips' texts.
    video2 = video.detach().clone()
    video2[1] = text[0, 0].detach() * 10
    assert mil_nce(video2, text, 0.07, text_mask=mask).item() != pytest.approx(got, abs=1e-4)


def test_caption_mask_per_caption():
    video, text = _inputs(seed=3)
    mask = torch.ones(6, 5)
    mask[0, 2:] = 0
    mask[3] = 0
    got = mil_nce(video, text, 0.07, text_mask=mask).item()
    assert got == pytest.approx(reference_mil_nce(video, text, 0.07, mask), abs=1e-5)


def test_all_masked_is_exact_zero_with_finite_grads():
    video, text = _inputs()
    loss = mil_nce(video, text, 0.07, text_mask=torch.zeros(6))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(video.grad).all() and torch.isfinite(text.grad).all()
    assert video.grad.abs().sum() == 0


def test_partially_masked_grads_are_finite():
    video, text = _inputs()
    mask = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    mil_nce(video, text, 0.07, text_mask=mask).backward()
    assert torch.isfinite(video.grad).all() and torch.isfinite(text.grad).all()
    assert text.grad[0].abs().sum() == 0  # a masked caption gets no gradient


def test_total_loss_weights_and_official_normalisation():
    g = torch.Generator().manual_seed(4)
    out = {
        "video_va": torch.randn(4, 8, generator=g),
        "audio_va": torch.randn(4, 8, generator=g),
        "video_vt": torch.randn(4, 6, generator=g),
        "text_vt": torch.randn(4, 3, 6, generator=g),
    }
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    va = nce(out["video_va"], out["audio_va"], 0.07)
    vt = mil_nce(out["video_vt"], out["text_vt"], 0.07, text_mask=mask)
    paper = total_loss(out, LossConfig(lambda_vt=2.0), text_mask=mask)
    assert paper["loss"].item() == pytest.approx((va + 2 * vt).item(), abs=1e-5)
    official = total_loss(out, LossConfig(lambda_vt=2.0, normalize="official"), text_mask=mask)
    assert official["loss"].item() == pytest.approx((va + 2 * vt).item() / 3, abs=1e-5)
    assert paper["mil_nce_vt"].item() == pytest.approx(vt.item(), abs=1e-6)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="tau"):
        LossConfig(tau=0)
    with pytest.raises(ValueError, match="normalize"):
        LossConfig(normalize="mean")


def test_bf16_inputs_give_fp32_loss():
    video, text = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mil_nce(video.bfloat16(), text.bfloat16(), 0.07)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


# ---------------------------------------------------------------- two ranks, gloo
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, video, audio, text, text_mask, results):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        B = video.shape[0] // world_size
        rows = slice(rank * B, (rank + 1) * B)
        local = {
            "video_va": video[rows].clone().requires_grad_(),
            "audio_va": audio[rows].clone().requires_grad_(),
            "video_vt": video[rows].clone().requires_grad_(),
            "text_vt": text[rows].clone().requires_grad_(),
        }
        # Exercise the real collective in both directions of the graph.
        gathered = gather_with_grad(local["video_va"], rank, world_size)
        assert torch.equal(gathered.detach(), video)
        loss = total_loss(
            local, LossConfig(), text_mask=text_mask[rows], rank=rank, world_size=world_size
        )["loss"]
        loss.backward()
        results[rank] = (loss.item(), {k: v.grad.clone() for k, v in local.items()})
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_loss_and_grads_equal_single_process():
    world_size, B, K, D = 2, 3, 4, 8
    g = torch.Generator().manual_seed(5)
    video = torch.randn(world_size * B, D, generator=g)
    audio = torch.randn(world_size * B, D, generator=g)
    text = torch.randn(world_size * B, K, D, generator=g)
    # Unequal valid rows per rank (3 vs 1): a per-rank mean would not be exact.
    text_mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])

    single = {
        "video_va": video.clone().requires_grad_(),
        "audio_va": audio.clone().requires_grad_(),
        "video_vt": video.clone().requires_grad_(),
        "text_vt": text.clone().requires_grad_(),
    }
    single_loss = total_loss(single, LossConfig(), text_mask=text_mask)["loss"]
    single_loss.backward()

    # A spawned manager, not a forked one: forking the pytest process copies whatever
    # threads it holds (an embedded Ray driver's among them) into the manager's server.
    manager = mp.get_context("spawn").Manager()
    results = manager.dict()
    mp.spawn(
        _worker,
        args=(world_size, _free_port(), video, audio, text, text_mask, results),
        nprocs=world_size,
        join=True,
    )
    losses = [results[r][0] for r in range(world_size)]
    # Mean over ranks of the per-rank losses == the single-process loss.
    assert sum(losses) / world_size == pytest.approx(single_loss.item(), abs=1e-5)
    # Rank r's input gradient is world_size x the global gradient of its rows: DDP's
    # averaging of parameter gradients then gives exactly the single-process gradient.
    for name, tensor in single.items():
        per_rank = torch.cat([results[r][1][name] for r in range(world_size)]) / world_size
        torch.testing.assert_close(per_rank, tensor.grad, atol=1e-6, rtol=1e-5)
