"""Guardrail: modules only import earlier stages, in data-flow order, and few touch Ray.

Data flows preprocessing -> training -> tuning -> pipeline; a package may import only the
packages before it. Inside `preprocessing/` and `training/` the modules have an order too
(`MODULE_ORDER`, the map in docs/architecture.md): a module may import only itself and the
modules listed before it. Imports under `if TYPE_CHECKING:` are annotations, not
dependencies, and are not counted. Parsed with `ast`, so nothing is imported to check it.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["preprocessing", "training", "tuning", "pipeline"]
# Per stage, the modules allowed to import Ray: one per program (Ray Data, Ray Train, Ray
# Data for evaluation, Ray Tune).
RAY_MODULES = {
    "preprocessing": {"preprocessing/jobs.py"},
    "training": {"training/distributed.py", "training/eval/extract.py"},
    "tuning": {"tuning/sweep.py"},
}
# Data-flow order of the modules of a stage; a package name stands for all its modules
# (`training.model` is one unit with its own tests).
MODULE_ORDER = {
    "preprocessing": [
        "storage", "records", "config", "sources", "probe", "windows", "decode",
        "shard_format", "encode", "manifest", "vad", "vocab", "shards", "jobs",
    ],
    "training": [
        "config_io",
        "data.augment", "data.loader", "data.wordpiece",
        "model",
        "objectives.contrastive", "objectives.base", "objectives.vatt", "objectives.alpro",
        "checkpoint", "model_card", "export", "telemetry", "distributed",
        "eval.metrics", "eval.benchmarks", "eval.media", "eval.heldout", "eval.classifiers",
        "eval.extract", "eval.models", "eval.retrieval", "eval.probe", "eval.zeroshot",
        "eval.report", "eval.alpro",
        "pretrain.optim", "pretrain.ds_config", "pretrain.config", "pretrain.run_folder",
        "pretrain.loop",
        "finetune.config", "finetune.data", "finetune.model", "finetune.loop",
        "plan",
    ],
}  # fmt: skip


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def imports_of(path: Path) -> set[str]:
    """Every module name `path` imports at run time (`from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def sources(stage: str) -> list[Path]:
    return sorted((ROOT / stage).rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_stages_import_only_earlier_stages():
    bad = []
    for i, stage in enumerate(STAGES):
        later = STAGES[i + 1 :]
        for path in sources(stage):
            for name in imports_of(path):
                if name.split(".")[0] in later:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def _rank(stage: str, name: str) -> int | None:
    """Position of module `name` in its stage's order (None: a package __init__ or a name
    that is not a module, e.g. `training.distributed.fit`)."""
    rel = name.removeprefix(f"{stage}.")
    for i, unit in enumerate(MODULE_ORDER[stage]):
        if rel == unit or rel.startswith(unit + "."):
            return i
    return None


def test_modules_of_a_stage_import_only_earlier_modules():
    bad, unlisted = [], []
    for stage in MODULE_ORDER:
        for path in sources(stage):
            name = module_name(path)
            if path.name == "__init__.py":
                continue
            own = _rank(stage, name)
            if own is None:
                unlisted.append(name)
                continue
            for imported in imports_of(path):
                if not imported.startswith(f"{stage}."):
                    continue
                rank = _rank(stage, imported)
                if rank is not None and rank > own:
                    bad.append(f"{name} imports the later module {imported}")
    assert not unlisted, f"add these modules to MODULE_ORDER: {unlisted}"
    assert not bad, "\n".join(bad)


def test_the_model_and_losses_know_nothing_of_distribution_or_data():
    bad = []
    files = sorted((ROOT / "training" / "model").rglob("*.py")) + [
        ROOT / "training" / "objectives" / "contrastive.py"
    ]
    for path in files:
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in ("ray", "deepspeed", "preprocessing", "webdataset") or name.startswith(
                ("training.data", "training.pretrain", "training.distributed")
            ):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert len(files) > 3 and not bad, "\n".join(bad)


def test_few_modules_touch_ray():
    bad = []
    for stage, allowed in RAY_MODULES.items():
        for path in sources(stage):
            rel = str(path.relative_to(ROOT))
            if rel not in allowed and any(n.split(".")[0] == "ray" for n in imports_of(path)):
                bad.append(rel)
    assert not bad, f"only {RAY_MODULES} may import ray; also: {bad}"


def test_the_pretraining_loop_never_names_a_model_family():
    """The objective seam: the loop gets everything family-specific from an Objective."""
    loop = (ROOT / "training" / "pretrain" / "loop.py").read_text()
    imported = imports_of(ROOT / "training" / "pretrain" / "loop.py")
    assert not [n for n in imported if n.startswith(("training.objectives.vatt", "training.model"))]
    for word in ("VATT", "nce_va", "mil_nce", "video_va", "text_vt"):
        assert word not in loop, word
