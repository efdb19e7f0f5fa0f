"""Guardrail: modules only import earlier stages, and only one module per stage touches Ray.

Data flows preprocessing -> training -> tuning -> pipeline; a package may import only the
packages before it. Parsed with `ast`, so nothing is imported to check it.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["preprocessing", "training", "tuning", "pipeline"]
# Per stage, the one module allowed to import Ray (Ray Data / Train / Tune).
RAY_MODULES = {
    "preprocessing": {"preprocessing/jobs.py"},
    # trainer.py: pretraining; finetune.py: fine-tuning (both Ray Train loops + drivers).
    "training": {"training/trainer.py", "training/finetune.py"},
    "tuning": {"tuning/sweep.py"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def sources(stage: str) -> list[Path]:
    return sorted((ROOT / stage).rglob("*.py"))


def test_stages_import_only_earlier_stages():
    bad = []
    for i, stage in enumerate(STAGES):
        later = STAGES[i + 1 :]
        for path in sources(stage):
            for name in imports_of(path):
                if name.split(".")[0] in later:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_model_and_losses_know_nothing_of_distribution_or_data():
    bad = []
    files = sorted((ROOT / "training" / "model").rglob("*.py")) + [ROOT / "training" / "losses.py"]
    for path in files:
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ("ray", "deepspeed", "preprocessing", "webdataset") or name.startswith(
                ("training.loader", "training.trainer")
            ):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert len(files) > 3 and not bad, "\n".join(bad)


def test_one_module_per_stage_touches_ray():
    bad = []
    for stage, allowed in RAY_MODULES.items():
        for path in sources(stage):
            rel = str(path.relative_to(ROOT))
            if rel not in allowed and any(n.split(".")[0] == "ray" for n in imports_of(path)):
                bad.append(rel)
    assert not bad, f"only {RAY_MODULES} may import ray; also: {bad}"
