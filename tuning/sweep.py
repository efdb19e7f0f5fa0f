"""Ray Tune over full Ray Train + DeepSpeed pretraining runs (the one tuning module using Ray).

Driver (`run_sweep`): search space -> Tune domains, ASHA / PBT / FIFO scheduler on the
objective, `max_concurrent_trials` from the cluster's resources, `Tuner(...).fit()` or
`Tuner.restore(...)` when `<storage>/<name>` already holds the sweep. Each trial
(`_trial`, a Tune function trainable) builds its `TrainConfig` and calls
`training.pretrain.loop.run_training`, which fits a `TorchTrainer`; a Ray Train `UserCallback`
(`_ForwardReports`) hands every worker report to the trial, which reports it to Tune.

Why not Ray's `TuneReportCallback`: it forwards metrics only, and PBT (and restarting a trial
from where it stopped) needs Tune checkpoints. So the trial reports each Train checkpoint to
Tune as a pointer (a tiny folder with `train_checkpoint.json`: path, run, step), and a trial
restarted from a Tune checkpoint starts a Train run seeded from that path.

Storage (a folder or an object-store URI such as s3://bucket/sweeps): Tune's experiment in
`<storage>/<name>/`; trial X's Train runs in
`<storage>/<name>/trials/X` (named by the trial id, so a restored trial finds its own run and
resumes it) or `X_from_<other run>_<step>` after a PBT exploit.
"""

from __future__ import annotations

import functools
import json
import math
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preprocessing import storage
from training.pretrain.config import TrainConfig
from tuning.config import SweepConfig
from tuning.space import Param
from tuning.trials import trial_config

POINTER_FILE = "train_checkpoint.json"
TRIALS_DIR = "trials"

# Builds a trial's TrainConfig from `{dotted training key: value}` (sampled values plus the
# trial's name and storage): `tuning.trials.trial_config` on the sweep's base config.
ConfigBuilder = Callable[[dict[str, Any]], TrainConfig]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the report needs it (plain data, no Ray objects)."""

    trial_id: str
    params: dict[str, Any]  # user-facing key (e.g. loss.lambda) -> value
    status: str  # done / stopped early / error / unfinished
    last: dict[str, Any]  # the last reported metrics
    history: list[dict[str, Any]]  # every report: step, objective, loss
    run_dir: str  # the trial's last Train run folder
    error: str = ""


def trial_resources(base: TrainConfig, trial_cpus: float) -> dict[str, float]:
    """Everything one trial holds at once: its own process plus the Train workers."""
    workers = base.scaling.num_workers
    need = {"CPU": trial_cpus + workers * base.scaling.cpus_per_worker}
    if base.scaling.use_gpu:
        need["GPU"] = float(workers)
    return need


def max_concurrent(cluster: dict[str, float], need: dict[str, float]) -> int:
    """How many trials fit side by side (0 = not even one: the sweep would wait forever)."""
    return min(int(math.floor(cluster.get(k, 0.0) / v + 1e-9)) for k, v in need.items() if v > 0)


def tune_domain(param: Param):
    from ray import tune

    if param.kind == "choice":
        return tune.choice(list(param.values))
    if param.kind == "grid":
        return tune.grid_search(list(param.values))
    if param.kind == "uniform":
        return tune.uniform(*param.values)
    return tune.loguniform(*param.values)


def _mutation(param: Param):
    """PBT's perturbation of one key: a resample domain, or the list it steps through."""
    from ray import tune

    if param.kind == "uniform":
        return tune.uniform(*param.values)
    if param.kind == "loguniform":
        return tune.loguniform(*param.values)
    return list(param.values)


def build_scheduler(sweep: SweepConfig, max_steps: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s = sweep.scheduler
    if s.kind == "asha":
        # time_attr "step": rungs are optimizer steps, whatever the report cadence.
        return ASHAScheduler(
            time_attr="step",
            max_t=max_steps,
            grace_period=min(s.grace_period, max_steps),
            reduction_factor=s.reduction_factor,
        )
    if s.kind == "pbt":
        return PopulationBasedTraining(
            time_attr="step",
            perturbation_interval=s.perturbation_interval,
            hyperparam_mutations={p.key: _mutation(p) for p in sweep.params()},
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            seed=sweep.seed,
        )
    return FIFOScheduler()


class _ForwardReports:
    """Ray Train UserCallback (runs in the Train controller): every report -> the trial, and
    wait until Tune has recorded it, so Tune never lags behind the Train run (a restored trial
    then resumes where Tune left it). Built lazily so this module imports without Ray."""

    @staticmethod
    def make(reports, acks):
        from ray.train.v2.api.callback import UserCallback

        class ForwardReports(UserCallback):
            def after_report(self, run_context, metrics, checkpoint):
                # Rank 0's metrics: the trainer reduces losses over ranks before reporting, and
                # only rank 0 evaluates held-out retrieval.
                item = {
                    "metrics": dict(metrics[0]),
                    "checkpoint": checkpoint.path if checkpoint else None,
                }
                reports.put(item, block=True)
                acks.get(block=True)  # the trial's tune.report returned

        return ForwardReports()


def _run_name(trial_id: str, pointer: dict | None) -> str:
    """A trial's Train run name: its id, or a fresh run seeded from another trial's checkpoint."""
    if pointer is None or pointer["run"].split("_from_")[0] == trial_id:
        return pointer["run"] if pointer else trial_id
    return f"{trial_id}_from_{pointer['run'].split('_from_')[0]}_{pointer['step']}"


def _trial(values: dict[str, Any], *, build: ConfigBuilder, params: list[Param], trials_dir: str):
    """Tune function trainable: one full pretraining run, each Train report -> `tune.report`."""
    from ray import tune
    from ray.util.queue import Empty, Queue

    from training.pretrain.loop import run_training

    trial_id = tune.get_context().get_trial_id()
    pointer = None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            pointer = json.loads((Path(d) / POINTER_FILE).read_text())
    name = _run_name(trial_id, pointer)
    overrides = {p.target: values[p.key] for p in params}
    cfg = build({**overrides, "name": name, "storage": trials_dir})
    run_dir = cfg.run_dir()
    start_from = pointer["path"] if pointer and pointer["run"] != name else None

    reports = Queue(maxsize=1, actor_options={"num_cpus": 0})
    acks = Queue(maxsize=1, actor_options={"num_cpus": 0})
    failure: list[BaseException] = []
    summary: list[dict] = []

    def fit() -> None:
        try:
            callbacks = [_ForwardReports.make(reports, acks)]
            summary.append(run_training(cfg, callbacks=callbacks, start_from=start_from))
        except BaseException as e:  # re-raised in the trial's thread below
            failure.append(e)

    worker = threading.Thread(target=fit, name=f"fit-{name}", daemon=True)
    worker.start()

    forwarded = 0

    def forward(item: dict) -> None:
        nonlocal forwarded
        forwarded += 1
        metrics = {**item["metrics"], "train_run": run_dir}
        if item["checkpoint"] is None:
            tune.report(metrics)
            return
        step = int(metrics["step"])
        path = item["checkpoint"]
        if storage.is_uri(run_dir):
            # Ray Train names the checkpoint by its path on the filesystem (no scheme, no
            # endpoint): point at it with the run's own URI instead.
            path = storage.join(run_dir, posixpath.basename(path.rstrip("/")))
        with tempfile.TemporaryDirectory(prefix="vatt-pointer-") as tmp:
            record = {"path": path, "run": name, "step": step}
            Path(tmp, POINTER_FILE).write_text(json.dumps(record))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    while worker.is_alive():
        try:
            item = reports.get(block=True, timeout=1.0)
        except Empty:
            continue
        forward(item)
        acks.put(True)
    if failure:
        raise failure[0]
    if not forwarded and summary:
        # The run had already reached max_steps before this (restored) trial started it:
        # nothing was reported, so report its final state.
        s = summary[0]
        final = {"step": s["steps"], **(s.get("final") or {})}
        final.update({f"eval_{k}": v for k, v in (s.get("eval_after") or {}).items()})
        forward({"metrics": final, "checkpoint": s.get("checkpoint")})


def _trial_name(trial) -> str:
    return trial.trial_id


def _records(results, statuses: dict[str, str], sweep: SweepConfig, max_steps: int):
    key = sweep.objective.key
    out = []
    for result in results:
        df = result.metrics_dataframe
        rows = [] if df is None else df.to_dict("records")
        last = dict(result.metrics or {})
        trial_id = Path(result.path).name  # trial_dirname_creator: the trial id
        config = result.config or {}
        step = int(last.get("step", 0) or 0)
        if result.error is not None:
            status = "error"
        elif step >= max_steps:
            status = "done"
        elif statuses.get(trial_id) == "TERMINATED":
            status = "stopped early"
        else:
            status = "unfinished"
        history = [
            {"step": int(r["step"]), "objective": r.get(key), "loss": r.get("loss")}
            for r in rows
            if r.get("step") is not None and not _isnan(r.get("step"))
        ]
        out.append(
            TrialRecord(
                trial_id=str(trial_id),
                params={p.key: config.get(p.key) for p in sweep.params()},
                status=status,
                last=last,
                history=history,
                run_dir=str(last.get("train_run", "")),
                error="" if result.error is None else str(result.error).strip().splitlines()[0],
            )
        )
    return sorted(out, key=lambda r: r.trial_id)


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


@dataclass(frozen=True)
class SweepOutcome:
    records: list[TrialRecord]
    sweep_dir: str
    resumed: bool  # Tuner.restore continued an earlier run of the same sweep
    interrupted: bool  # stopped (e.g. Ctrl-C) before every trial finished: run again to resume
    max_concurrent_trials: int


def _sweep_location(sweep: SweepConfig) -> tuple[str, Any, str]:
    """(sweep folder or URI, pyarrow filesystem or None, the experiment's path for Tune).

    On an object store Tune gets the filesystem resolved here (endpoint and credentials from
    this environment), as Ray Train does for checkpoints, so both write where we read."""
    sweep_dir = sweep.sweep_dir()
    if storage.is_uri(sweep_dir):
        fs, path = storage.filesystem(sweep_dir)
        return sweep_dir, fs, path.rstrip("/")
    sweep_dir = os.path.abspath(sweep_dir)
    return sweep_dir, None, sweep_dir


def run_sweep(sweep: SweepConfig, base: TrainConfig, callbacks: list | None = None) -> SweepOutcome:
    """Run (or resume) `sweep` on the connected Ray cluster.

    Args:
        sweep: the sweep config; outputs go to `sweep.sweep_dir()` (a folder, made absolute
            here, or an object-store URI).
        base: the training config every trial starts from (`tuning.trials.base_config`);
            each trial's is `trial_config(base, {sampled values, name, storage})`.
        callbacks: extra `ray.tune.Callback`s for a new sweep (the tests interrupt with one).
    Returns:
        The trials (finished, stopped early, errored or unfinished) and how the run went.
    """
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    params = sweep.params()
    need = trial_resources(base, sweep.resources.trial_cpus)
    fits = max_concurrent(ray.cluster_resources(), need)
    if fits < 1:
        have = {k: ray.cluster_resources().get(k, 0) for k in need}
        raise ValueError(
            f"one trial needs {need} (resources.trial_cpus + scaling.num_workers x "
            f"scaling.cpus_per_worker) but the cluster has {have}: lower scaling.cpus_per_worker"
        )
    concurrent = min(fits, sweep.resources.max_concurrent_trials or fits)
    if sweep.scheduler.kind == "pbt" and concurrent < 2:
        raise ValueError(
            f"scheduler.kind=pbt needs >= 2 trials running at once (a population), but only "
            f"{concurrent} fits in the cluster with {need} each: use asha, or more resources"
        )

    sweep_dir, fs, experiment = _sweep_location(sweep)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial,
            build=functools.partial(trial_config, base),
            params=params,
            trials_dir=storage.join(sweep_dir, TRIALS_DIR),
        ),
        {"cpu": sweep.resources.trial_cpus},
    )
    resumed = tune.Tuner.can_restore(experiment, storage_filesystem=fs)
    if resumed:
        # Finished trials are kept as they are; unfinished ones continue from their last
        # report (their Train run resumes from its newest checkpoint); errored ones retry.
        tuner = tune.Tuner.restore(
            experiment, trainable, resume_unfinished=True, resume_errored=True,
            storage_filesystem=fs,
        )  # fmt: skip
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={p.key: tune_domain(p) for p in params},
            tune_config=tune.TuneConfig(
                metric=sweep.objective.key,
                mode=sweep.objective.direction,
                scheduler=build_scheduler(sweep, base.max_steps),
                # Tune ignores max_concurrent_trials when a search_alg is given: the generator
                # itself caps the running trials.
                search_alg=BasicVariantGenerator(
                    max_concurrent=concurrent, random_state=sweep.seed
                ),
                num_samples=sweep.num_samples,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=posixpath.basename(experiment),
                storage_path=posixpath.dirname(experiment),
                storage_filesystem=fs,
                verbose=1,
                callbacks=callbacks,
                # Pointers are tiny; Train's own retention (checkpoint.keep) prunes the weights.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            ),
        )
    results = tuner.fit()
    # Statuses as saved on disk: after Ctrl-C Tune marks the trials it stopped TERMINATED in
    # memory, but saves them as RUNNING/PENDING, which is what a restore continues.
    saved = tune.ExperimentAnalysis(experiment, storage_filesystem=fs).trials
    statuses = {t.trial_id: t.status for t in saved}
    records = _records(results, statuses, sweep, base.max_steps)
    # The search generates trials lazily (one per free slot): an early stop can leave some
    # not even created yet.
    interrupted = len(statuses) < sweep.num_trials() or any(
        s not in ("TERMINATED", "ERROR") for s in statuses.values()
    )
    return SweepOutcome(
        records=records,
        sweep_dir=sweep_dir,
        resumed=resumed,
        interrupted=interrupted,
        max_concurrent_trials=concurrent,
    )
