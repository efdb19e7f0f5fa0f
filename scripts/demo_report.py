"""The demo's verdict: held-out text->video retrieval of the trained debug model vs chance and
vs the same model before training, and (given the `vatt eval` folder) the evaluations of the
trained model vs an untrained one; printed and written to a JSON report."""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    }
    report["passed"] = report["r1_over_chance"] >= 5 and after["t2v_r1"] > before["t2v_r1"]
    if eval_dir:
        report["evaluations"] = evaluations(Path(eval_dir))
        report["passed"] &= all(e["trained_beats_untrained"] for e in report["evaluations"])
    Path(out).write_text(json.dumps(report, indent=2))
    print(
        f"\nheld-out text->video retrieval on {report['held_out_videos']} MSR-VTT-style videos\n"
        f"  untrained: R@1 {before['t2v_r1']:.3f}  R@5 {before['t2v_r5']:.3f}\n"
        f"  trained:   R@1 {after['t2v_r1']:.3f}  R@5 {after['t2v_r5']:.3f}  "
        f"({report['r1_over_chance']:.1f}x chance R@1 {chance:.3f})\n"
        f"  loss {report['loss_first']:.3f} -> {report['loss_last']:.3f} over "
        f"{report['steps']} steps; curve: {report['loss_curve_png']}\n"
        f"  {'PASS' if report['passed'] else 'FAIL'}: R@1 >= 5x chance and above the untrained "
        f"model{', and every evaluation above the untrained model' if eval_dir else ''} ({out})"
    )
    for e in report.get("evaluations", []):
        print(
            f"  {e['name']:<9} {e['metric']:<15} untrained {e['untrained']:.3f} -> trained "
            f"{e['trained']:.3f}  ({e['scored']} scored)"
        )
    return 0 if report["passed"] else 1


def evaluations(eval_dir: Path) -> list[dict]:
    """Headline number of every `vatt eval ... --compare-untrained` report under eval_dir."""
    rows = []
    for path in sorted(eval_dir.glob("*/report.json")):
        r = json.loads(path.read_text())
        models = {m["label"]: m for m in r["models"]}
        if "untrained" not in models:
            continue
        if "benchmark" in r:  # retrieval
            metric = "t2v R@1"
            values = {k: m["t2v"]["r1"] for k, m in models.items()}
        else:  # linear probe: the paper's classifier when it ran, else the first one
            clf = "low_rank" if "low_rank" in models["trained"]["mean"] else None
            clf = clf or next(iter(models["trained"]["mean"]))
            metric = f"{clf} top-1"
            values = {k: m["mean"][clf] for k, m in models.items()}
        rows.append(
            {
                "name": path.parent.name,
                "metric": metric,
                "trained": values["trained"],
                "untrained": values["untrained"],
                "trained_beats_untrained": values["trained"] > values["untrained"],
                "scored": models["trained"]["num_scored"],
                "report": str(path),
            }
        )
    return rows


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
