"""The demo's verdict: held-out text->video retrieval of the trained debug model vs chance and
vs the same model before training, and (given the `vatt eval` folder) the evaluations of the
trained model vs an untrained one and chance (retrieval, linear probes, zero-shot
classification); printed and written to a JSON report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.model_card import headline, video_audio_alignment  # noqa: E402


def main(run_dir: str, out: str, eval_dir: str | None = None) -> int:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    before, after = summary["eval_before"], summary["eval_after"]
    chance = after["chance_r1"]
    report = {
        "held_out_videos": after["num_scored"],
        "chance_r1": chance,
        "untrained": {k: before[k] for k in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr")},
        "trained": {k: after[k] for k in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr")},
        "r1_over_chance": after["t2v_r1"] / chance,
        "loss_first": summary["first_loss"],
        "loss_last": summary["final"]["loss"],
        "steps": summary["steps"],
        "loss_curve_png": str(Path(run_dir) / "plots" / "loss.png"),
        "video_audio": video_audio_alignment(summary),
    }
    # The verdict on held-out retrieval. The sample corpus has 8 topics with 2 held-out videos
    # each and nothing else to tell two same-topic videos apart, so R@1 is capped at 0.5 and
    # binomial: even a perfect topic matcher scores 0.5 +- 0.125 over 16 videos and falls
    # under "R@1 >= 5x chance" 4% of the time, one that ranks the right topic first 3 times
    # in 4 does 22% of the time (runs of this demo scored 0.188-0.5). R@5 measures the topic
    # matching itself: >= 2x its chance level (5/N) rejects a random ranking at p < 0.01 over
    # 16 videos; R@1 must still beat the untrained model.
    report["chance_r5"] = min(1.0, 5 / after["num_scored"])
    report["r5_over_chance"] = after["t2v_r5"] / report["chance_r5"]
    report["passed"] = report["r5_over_chance"] >= 2 and after["t2v_r1"] > before["t2v_r1"]
    if eval_dir:
        va = report["video_audio"]
        report["evaluations"] = evaluations(Path(eval_dir), audio_aligned=bool(va and va["learnt"]))
        required = [e for e in report["evaluations"] if e["required"]]
        # Most of these sets have 8-40 items, where one clip moves a score by 0.125: a model
        # that learnt ties an untrained one on some set now and then (runs of this demo tied
        # the UCF101 probe at 0.375 once, and the ESC-50 one). So: never worse anywhere, and
        # better on a majority of the required sets.
        better = sum(e["trained_beats_untrained"] for e in required)
        report["passed"] &= all(e["trained"] >= e["untrained"] for e in required)
        report["passed"] &= 2 * better > len(required)
    Path(out).write_text(json.dumps(report, indent=2))
    print(
        f"\nheld-out text->video retrieval on {report['held_out_videos']} MSR-VTT-style videos\n"
        f"  untrained: R@1 {before['t2v_r1']:.3f}  R@5 {before['t2v_r5']:.3f}\n"
        f"  trained:   R@1 {after['t2v_r1']:.3f}  R@5 {after['t2v_r5']:.3f}  "
        f"({report['r1_over_chance']:.1f}x chance R@1 {chance:.3f})\n"
        f"  loss {report['loss_first']:.3f} -> {report['loss_last']:.3f} over "
        f"{report['steps']} steps; curve: {report['loss_curve_png']}\n"
        f"  {'PASS' if report['passed'] else 'FAIL'}: R@5 >= 2x chance "
        f"({report['r5_over_chance']:.1f}x of {report['chance_r5']:.3f}) and R@1 above the "
        f"untrained model{', and the evaluations marked * never below it, a majority above' if eval_dir else ''}"
        f" ({out})"
    )
    for e in report.get("evaluations", []):
        print(
            f"  {'*' if e['required'] else ' '} {e['name']:<19} {e['metric']:<20} untrained "
            f"{e['untrained']:.3f} -> trained {e['trained']:.3f}  (chance {e['chance']:.3f}; "
            f"{e['scored']} scored)"
        )
    va = report["video_audio"]
    if va:
        print(
            f"  video-audio NCE at the last step {va['nce_va']:.3f}, its chance level "
            f"ln(2B - 1) = {va['chance_level']:.3f} for global batch {va['global_batch']}: "
            + (
                "aligned, so the audio evaluations are required too"
                if va["learnt"]
                else "audio is not aligned with video yet, so the audio evaluations (probe "
                "and zero-shot) are reported, not required"
            )
        )
    return 0 if report["passed"] else 1


def evaluations(eval_dir: Path, audio_aligned: bool) -> list[dict]:
    """Headline number of every `vatt eval ... --compare-untrained` report under eval_dir."""
    rows = []
    for path in sorted(eval_dir.glob("*/report.json")):
        report = json.loads(path.read_text())
        row = headline(report, path.parent.name)
        if row is None or row["untrained"] is None:
            continue
        row["trained_beats_untrained"] = row["trained"] > row["untrained"]
        # The audio tower learns only through NCE_va (spec section 3): until that is below its
        # chance level (video_audio_alignment) the audio towers of the trained and untrained
        # models are equally untaught, and an audio probe or zero-shot score moves by chance
        # (one short debug run scored the ESC-50 probe 0.325, another with other DropToken
        # draws 0.175, against 0.175 untrained): shown, not part of the verdict.
        row["required"] = report.get("modality") != "audio" or audio_aligned
        rows.append(row | {"report": str(path)})
    return rows


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
