"""Typed config of a sweep (`vatt tune --config SWEEP.yaml`): which training config to start
from, the search space, the objective, the scheduler (ASHA / PBT / none) and trial resources.

Validation lives in `__post_init__` (ValueError naming the dotted key); whether the searched
keys exist in the training config is checked by `tuning.trials.check_space`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preprocessing import storage
from tuning.space import Param, grid_size, parse_space

# Objective name -> (metric key the trials report, default mode). Retrieval metrics come from
# held-out MSR-VTT evaluation (`eval.*`); `loss` is the training loss of the last logged step
# (no held-out VATT loss is computed: held-out clips have no audio stream to contrast with).
OBJECTIVES = {
    **{f"{d}_r{k}": (f"eval_{d}_r{k}", "max") for d in ("t2v", "v2t") for k in (1, 5, 10)},
    **{f"{d}_{m}": (f"eval_{d}_{m}", "min") for d in ("t2v", "v2t") for m in ("medr", "meanr")},
    "loss": ("loss", "min"),
}
SCHEDULERS = ("asha", "pbt", "fifo")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What "better" means: a reported metric and whether to maximise it."""

    # t2v_r10: held-out zero-shot text->video R@10, the objective. On a held-out set of
    # <= 10 videos R@10 is always 1; choose t2v_r1 or t2v_medr there.
    metric: str = "t2v_r10"
    mode: str = ""  # "" = the metric's natural direction (max for R@K, min for ranks/loss)

    def __post_init__(self) -> None:
        if self.metric not in OBJECTIVES:
            raise ValueError(
                f"objective.metric={self.metric!r}: choose from {', '.join(OBJECTIVES)}"
            )
        if self.mode not in ("", "max", "min"):
            raise ValueError(f"objective.mode={self.mode!r}: max, min or empty (natural)")

    @property
    def key(self) -> str:
        """The metric key in what trials report."""
        return OBJECTIVES[self.metric][0]

    @property
    def direction(self) -> str:
        return self.mode or OBJECTIVES[self.metric][1]

    @property
    def needs_eval(self) -> bool:
        return self.key.startswith("eval_")


@dataclass(frozen=True)
class SchedulerConfig:
    """Early stopping (ASHA, the default), population-based training, or neither (fifo)."""

    kind: str = "asha"
    # ASHA: every trial runs at least grace_period steps; at each rung (grace * rf^k steps) only
    # the best 1/reduction_factor of the trials that reached it go on.
    grace_period: int = 20
    reduction_factor: int = 2
    # PBT: every perturbation_interval steps a bottom-quantile trial copies a top trial's
    # checkpoint and perturbs its hyperparameters (lambda / tau / DropToken need no new shapes).
    perturbation_interval: int = 20
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ValueError(f"scheduler.kind={self.kind!r}: choose from {', '.join(SCHEDULERS)}")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ValueError("scheduler.grace_period must be >= 1 and reduction_factor >= 2")
        if self.perturbation_interval < 1:
            raise ValueError("scheduler.perturbation_interval must be >= 1")
        if not 0 < self.quantile_fraction <= 0.5:
            raise ValueError(f"scheduler.quantile_fraction={self.quantile_fraction}: (0, 0.5]")
        if not 0 <= self.resample_probability <= 1:
            raise ValueError("scheduler.resample_probability must be in [0, 1]")


@dataclass(frozen=True)
class ResourcesConfig:
    """Per-trial resources beyond the training workers (which `scaling.*` sizes)."""

    # The trial's own process (it only waits on Ray Train's controller). Tune rejects 0, and
    # on a 2-CPU box 1 + 2 workers x 0.5 is the split that cannot deadlock (platform notes).
    trial_cpus: float = 1.0
    # 0 = as many as the cluster fits: floor(CPUs / (trial_cpus + workers * cpus_per_worker)).
    max_concurrent_trials: int = 0

    def __post_init__(self) -> None:
        if self.trial_cpus <= 0:
            raise ValueError(f"resources.trial_cpus={self.trial_cpus} must be > 0 (Tune needs it)")
        if self.max_concurrent_trials < 0:
            raise ValueError("resources.max_concurrent_trials must be >= 0 (0 = derived)")


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: outputs in `<storage>/<name>`; the same command again resumes it."""

    train_config: str  # a `vatt train` config: YAML path or bundled name (debug, mbs, ...)
    space: dict[str, Any]  # see tuning/space.py
    name: str = "sweep"
    storage: str = "sweeps"
    # Applied to the training config of every trial (dotted keys or nested sections).
    train_overrides: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1  # samples per grid point (random keys are drawn anew for each)
    seed: int = 0  # random draws of the search; the same seed gives the same trials
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name={self.name!r}: a non-empty sweep name without '/'")
        if self.num_samples < 1:
            raise ValueError(f"num_samples={self.num_samples} must be >= 1")
        self.params()  # a bad space fails here, naming the key

    def params(self) -> list[Param]:
        return parse_space(self.space)

    def num_trials(self) -> int:
        return self.num_samples * grid_size(self.params())

    def sweep_dir(self) -> str:
        """`<storage>/<name>`: a folder, or an object-store URI (query options kept)."""
        return storage.join(self.storage, self.name)
