"""The model card (README.md) of an export: what the model is, how to load it, how it was
trained and what it measured, from the export's config, the training config and evaluation
reports. Text in, text out: no model, no IO.

`headline` reads the report of any evaluation this project writes (`vatt eval retrieval`,
`linear-probe`, `zero-shot`, and a run's summary.json with its held-out retrieval) down to one
row: metric, trained, untrained, chance, items scored. `video_audio_alignment` says whether a
run's audio tower learnt anything (its last NCE_va against chance). `make demo`'s report and
the tests use both.
"""

from __future__ import annotations

import json
import math


def _models(report: dict) -> dict[str, dict]:
    return {m["label"]: m for m in report.get("models", [])}


def headline(report: dict, name: str) -> dict | None:
    """{name, metric, trained, untrained (None without a baseline), chance, scored} of one
    evaluation report, or None when the report is of no known kind."""
    if "eval_after" in report:  # a training run's summary.json: held-out retrieval
        after, before = report.get("eval_after"), report.get("eval_before")
        if not after:
            return None
        return {
            "name": name, "metric": "held-out t2v R@1", "trained": after["t2v_r1"],
            "untrained": before["t2v_r1"] if before else None, "chance": after["chance_r1"],
            "scored": after["num_scored"],
        }  # fmt: skip
    models = _models(report)
    trained = models.get("trained") or next(iter(models.values()), None)
    if trained is None:
        return None
    untrained = models.get("untrained")
    if "benchmark" in report:  # retrieval
        metric, pick = "t2v R@1", lambda m: m["t2v"]["r1"]
        chance = trained["chance_r1"]
    elif "top1" in trained:  # zero-shot classification
        metric, pick = "zero-shot top-1", lambda m: m["top1"]
        chance = trained["chance_top1"]
    elif "mean" in trained:  # linear probe: the paper's classifier when it ran
        clf = "low_rank" if "low_rank" in trained["mean"] else next(iter(trained["mean"]))
        metric, pick = f"{clf} probe top-1", lambda m: m["mean"][clf]
        chance = next(iter(next(iter(trained["results"].values())).values()))["chance"]
    else:
        return None
    return {
        "name": name, "metric": metric, "trained": pick(trained),
        "untrained": pick(untrained) if untrained else None, "chance": chance,
        "scored": trained["num_scored"],
    }  # fmt: skip


def video_audio_alignment(summary: dict) -> dict | None:
    """The last NCE_va against its chance level: with one denominator over both directions
    (spec section 3) a model that tells no clip from another scores ln(2B - 1)."""
    final, steps = summary.get("final") or {}, summary.get("steps") or 0
    if "nce_va" not in final or not steps:
        return None
    batch = round(summary["samples_seen"] / steps)
    chance = math.log(2 * batch - 1)
    return {
        "nce_va": final["nce_va"],
        "global_batch": batch,
        "chance_level": chance,
        "learnt": final["nce_va"] < chance - 0.1,
    }


def _fmt(x) -> str:
    return "" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _evaluation_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["No evaluation was measured for this export (pass `--eval REPORT.json` to "
                "`vatt export` to include `vatt eval` reports)."]  # fmt: skip
    lines = [
        "| evaluation | metric | items | untrained | trained | chance |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['metric']} | {r['scored']} | {_fmt(r['untrained'])} | "
            f"**{_fmt(r['trained'])}** | {_fmt(r['chance'])} |"
        )
    lines += ["", "Untrained = the same architecture with a fresh random init (the baseline)."]
    return lines


def _training_table(config: dict | None, steps, world_size, droptoken) -> list[str]:
    if not config:
        return ["The training config was not recorded with this model."]
    data, optim = config.get("data") or {}, config.get("optim") or {}
    ds, loss = config.get("deepspeed") or {}, config.get("loss") or {}
    rows = [
        ("preset", config.get("preset")),
        ("objective", config.get("objective", "vatt")),
        ("trained steps", steps),
        ("workers x micro-batch x accumulation", f"{world_size} x {ds.get('micro_batch')} x "
         f"{ds.get('grad_accum', 1)}"),
        ("optimizer", f"Adam lr {optim.get('lr')} (warm-up {optim.get('warmup_steps')}, "
         f"to {optim.get('end_lr')} at {optim.get('decay_steps')})"),
        ("loss", ", ".join(f"{k} {v}" for k, v in loss.items())),
        ("DropToken rate", droptoken),
        ("HowTo100M shards", data.get("howto100m") or "-"),
        ("AudioSet shards", data.get("audioset") or "-"),
        ("mix weights (HowTo100M / AudioSet)",
         f"{data.get('howto100m_weight')} / {data.get('audioset_weight')}"),
        ("clip", f"{data.get('clip_seconds')} s, {data.get('num_captions')} captions x "
         f"{data.get('max_words')} words"),
    ]  # fmt: skip
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


def make_model_card(
    export_config: dict,
    training_config: dict | None,
    evaluations: list[dict],
    parameters: dict[str, dict[str, int]] | None = None,
) -> str:
    """README.md of an export folder.

    Args:
        export_config: the export's config.json (format, architecture, model_config, ...).
        training_config: the TrainConfig dict the checkpoint recorded (credentials already
            redacted by the loop), or None.
        evaluations: `headline` rows of measured evaluations.
        parameters: `model.parameter_counts()` ({tower: {..., total}}), when known.
    """
    mc = export_config.get("model_config") or {}
    tok = mc.get("tokenizer") or {}
    preset = export_config.get("preset") or mc.get("name", "model")
    steps = export_config.get("trained_steps")
    family = "ALPRO" if export_config.get("architecture") == "alpro" else "VATT"
    total = sum(p["total"] for p in (parameters or {}).values()) if parameters else None
    towers = ", ".join(
        f"{t} {(mc.get(t) or {}).get('num_layers')} x {(mc.get(t) or {}).get('d_model')}"
        for t in ("video", "audio", "text")
    )
    head = mc.get("head") or {}
    lines = [
        "---",
        "library_name: vatt-ray",
        "tags: [video, audio, text, self-supervised, contrastive, vatt]",
        "pipeline_tag: feature-extraction",
        "---",
        "",
        f"# {family} {preset} (vatt-ray export, {steps} training steps)",
        "",
        "A video-audio-text transformer (VATT, Akbari et al. 2021) pretrained self-supervised "
        "with NCE (video-audio) and MIL-NCE (video-text). It embeds video clips, waveforms and "
        "captions into common spaces for retrieval, zero-shot classification and features.",
        "",
        "## Load it",
        "",
        "Needs torch, safetensors and this project's `training/model` (plain PyTorch): no Ray,",
        "no DeepSpeed.",
        "",
        "```python",
        "from training.export import from_pretrained",
        "model = from_pretrained('THIS_FOLDER')  # eval mode",
        "video_vt = model.encode_video(video)['video_vt']  # video (B, T, H, W, 3) in [-1, 1]",
        "text_vt = model.encode_text(text_ids)['text_vt']  # ids from tokenizer.json",
        "```",
        "",
        "The weights alone: `safetensors.torch.load_file('model.safetensors')`.",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {export_config.get('architecture', 'vatt')} ({preset}) |",
        f"| towers (layers x width) | {towers} |",
        f"| parameters | {'' if total is None else f'{total / 1e6:.1f} M'} |",
        f"| video input | {tok.get('frames')} x {tok.get('height')} x {tok.get('width')} "
        f"frames, patch {'x'.join(map(str, tok.get('video_patch', [])))} |",
        f"| audio input | {tok.get('audio_samples')} samples, patch {tok.get('audio_patch')} |",
        f"| text | {tok.get('vocab_size')} word ids (tokenizer.json) |",
        f"| common spaces | video-audio {head.get('d_va')}, video-text {head.get('d_vt')} |",
        "",
        "## Training",
        "",
        *_training_table(
            training_config, steps, export_config.get("world_size"), mc.get("droptoken_rate")
        ),
        "",
        "## Evaluation (measured)",
        "",
        *_evaluation_table(evaluations),
        "",
        "## Files",
        "",
        "`model.safetensors` (weights), `config.json` (format, architecture, model config, "
        "trained steps, source checkpoint), `tokenizer.json` (caption vocabulary, when the "
        "run had one), this `README.md`.",
        "",
        "<!-- generated by vatt export; the export's config: -->",
        f"<!-- {json.dumps({k: export_config.get(k) for k in ('format', 'trained_steps')})} -->",
        "",
    ]
    return "\n".join(lines)


__all__ = ["headline", "make_model_card"]
