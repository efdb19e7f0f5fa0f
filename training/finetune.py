"""Ray Train fine-tuning: a TorchTrainer whose workers train one pretrained VATT tower plus a
new linear head with plain DDP (gloo on CPU, NCCL on GPU), as `vatt finetune` runs it.

Per worker (`finetune_loop`): the model from `init` (export, checkpoint or run folder, or a
preset's random init) -> TowerClassifier -> DDP (`ray.train.torch.prepare_model`) -> SGD with
momentum, warm-up + cosine -> resume from the run's newest Ray checkpoint -> decode this
worker's share of the train and test files once (`finetune_data.ClipCache`) -> steps: a
random window per item, crop + flip (video) or mixup (audio), label-smoothed cross-entropy ->
test-set evaluation (every worker scores its share over clips x crops views, rank 0 gathers
top-1 / top-5) -> checkpoint through `ray.train.report` -> report.json on rank 0.
The driver (`run_finetune`) reads the list files, checks the model's shape against the data
config before any worker starts, runs the trainer and draws the plots.

Outputs in <storage>/<name>: metrics.csv (loss, train_acc, lr, clips/s per log step),
eval.csv (top1, top5), tensorboard/, plots/*.png, report.json, checkpoint_*/.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from training.finetune_config import FinetuneConfig

STATE_FILE = "finetune_state.pt"
REPORT = "report.json"


def _all_gather(value, world_size: int) -> list:
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    out = [None] * world_size
    dist.all_gather_object(out, value)
    return out


def _reduce_sums(values: list[float], world_size: int) -> list[float]:
    if world_size == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def score(predictions: list[tuple[str, int, list[float]]], num_classes: int) -> dict:
    """top1 / top5 accuracy (fractions) of (key, label, mean logits) rows, with counts."""
    import torch

    from training.finetune_data import topk_correct

    if not predictions:
        return {"top1": 0.0, "top5": 0.0, "num_scored": 0}
    logits = torch.tensor([p[2] for p in predictions])  # (N, classes)
    labels = torch.tensor([p[1] for p in predictions])  # (N,)
    correct = topk_correct(logits, labels, (1, 5))
    n = len(predictions)
    return {
        "top1": correct[1] / n,
        "top5": correct[5] / n,
        "num_scored": n,
        "chance_top1": 1.0 / num_classes,
    }


def finetune_loop(loop_config: dict) -> None:
    """One Ray Train worker: see the module docstring for the order of things."""
    cfg: FinetuneConfig = loop_config["cfg"]
    dataset = loop_config["dataset"]  # training.eval_data.ClassificationSet
    run_dir: str = loop_config["run_dir"]

    import ray.train
    import ray.train.torch
    import torch

    from training.finetune_config import finetune_lr
    from training.finetune_data import (
        ClipCache,
        ClipSpec,
        TowerClassifier,
        load_backbone,
        loss_fn,
        mixup,
        predict_items,
    )
    from training.telemetry import Telemetry, format_progress
    from training.trainer import _quiet_ray_train_logs

    _quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.torch_threads)
    device = ray.train.torch.get_device()
    log = (lambda msg: print(msg, flush=True)) if rank == 0 else (lambda msg: None)
    began = time.time()

    vatt, source = load_backbone(cfg.init, cfg.droptoken_rate, cfg.seed)
    spec = ClipSpec.build(cfg.task, vatt.cfg, cfg.data)
    classes = dataset.classes
    torch.manual_seed(cfg.seed)  # the same head on every rank (DDP also broadcasts rank 0's)
    module = TowerClassifier(vatt, cfg.task, len(classes), cfg.dropout).to(device)
    model = ray.train.torch.prepare_model(module) if world > 1 else module
    optimizer = torch.optim.SGD(
        module.parameters(),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
        weight_decay=cfg.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: finetune_lr(s, cfg.optim, cfg.max_steps) / cfg.optim.lr
    )

    step, carried = 0, {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, carried = int(state["step"]), state["carried"]
        log(f"resumed from {checkpoint.path} at step {step}")
    resumed_at = step  # 0 = a fresh start
    if step >= cfg.max_steps:
        log(f"run already complete at step {step} (max_steps={cfg.max_steps}); nothing to do")
        return

    # Each worker decodes its own share, once; failures are error lines, not crashes.
    t0 = time.perf_counter()
    train = ClipCache(dataset.train[rank::world], spec)
    test = ClipCache(dataset.test[rank::world], spec)
    decode_errors = [e for part in _all_gather(train.errors + test.errors, world) for e in part]
    usable = _all_gather((len(train), len(test)), world)
    log(
        f"decoded {sum(u[0] for u in usable)} train + {sum(u[1] for u in usable)} test items "
        f"on {world} workers in {time.perf_counter() - t0:.1f} s "
        f"({len(decode_errors)} undecodable)"
    )
    if len(train) == 0:
        raise RuntimeError(
            f"worker {rank}: none of its {len(dataset.train[rank::world])} training items "
            f"could be decoded ({'; '.join(train.errors[:2])})"
        )

    telemetry = Telemetry(run_dir, enabled=rank == 0, resume_step=step + 1)
    views = (cfg.eval.clips, cfg.eval.crops if cfg.task == "video" else 1)

    def evaluate(at_step: int) -> dict:
        model.eval()
        mine = predict_items(module, test, *views, cfg.eval.batch_size)
        model.train()
        rows = [(k, y, logits.tolist()) for k, y, logits in mine]
        metrics = score([r for part in _all_gather(rows, world) for r in part], len(classes))
        telemetry.log_eval(at_step, metrics)
        log(
            f"test @ step {at_step}: top-1 {metrics['top1']:.3f} top-5 {metrics['top5']:.3f} "
            f"on {metrics['num_scored']} items ({views[0]} clips x {views[1]} crops; "
            f"chance {1 / len(classes):.3f})"
        )
        return metrics

    # Resumed runs draw a different stream (seeded by the start step), as pretraining does.
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 7919 + step)
    order: list[int] = []
    first_loss, history = carried.get("first_loss"), carried.get("eval_history", [])
    # Sums since the last log line: loss x examples, correct, examples, data s, step s, steps.
    window = [0.0] * 6
    last_metrics, eval_metrics = carried.get("last_metrics", {}), carried.get("eval_last")
    model.train()
    while step < cfg.max_steps:
        t_step = time.perf_counter()
        picks = []
        while len(picks) < cfg.batch_size:
            if not order:
                order = torch.randperm(len(train), generator=gen).tolist()
            picks.append(order.pop())
        x = torch.stack([train.train_example(i, cfg.augment, gen) for i in picks]).to(device)
        y = torch.tensor([train.items[i].label for i in picks], device=device)  # (B,)
        data_s = time.perf_counter() - t_step
        mixed, target = None, y
        if cfg.task == "audio" and cfg.mixup_alpha > 0:
            x, y, y_b, lam = mixup(x, y, cfg.mixup_alpha, gen)
            mixed, target = (y_b, lam), (y if lam >= 0.5 else y_b)  # accuracy: the major label
        lr = scheduler.get_last_lr()[0]
        logits = model(x)  # (B, classes)
        loss = loss_fn(logits, y, cfg.optim.label_smoothing, mixed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        window[0] += float(loss.detach()) * len(picks)
        window[1] += float((logits.detach().argmax(1) == target).sum())
        window[2] += len(picks)
        window[3] += data_s
        window[4] += time.perf_counter() - t_step
        window[5] += 1
        is_last = step == cfg.max_steps
        if step % cfg.log_every == 0 or step == 1 or is_last:
            loss_sum, correct, seen, data_sum, time_sum, steps = _reduce_sums(window, world)
            step_time = time_sum / steps  # mean over ranks and steps
            metrics = {
                "loss": loss_sum / seen,
                "train_acc": correct / seen,
                "lr": lr,
                "clips_per_s": seen / (time_sum / world),
                "step_time_s": step_time,
                # Cutting + augmenting clips in the training process (no loader workers).
                "data_wait_frac": data_sum / max(time_sum, 1e-9),
            }
            window = [0.0] * 6
            first_loss = metrics["loss"] if first_loss is None else first_loss
            last_metrics = metrics
            telemetry.log(step, metrics)
            log(f"{format_progress(step, cfg.max_steps, metrics)} | acc {metrics['train_acc']:.3f}")
        if is_last or (cfg.eval.every_steps and step % cfg.eval.every_steps == 0):
            eval_metrics = evaluate(step)
            history.append({"step": step, **eval_metrics})
        if step % cfg.checkpoint.every_steps == 0 or is_last:
            carried = {
                "first_loss": first_loss,
                "eval_history": history,
                "eval_last": eval_metrics,
                "last_metrics": last_metrics,
            }
            with tempfile.TemporaryDirectory(prefix="vatt-finetune-") as tmp:
                if rank == 0:
                    state = {
                        "step": step,
                        "model": module.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "carried": carried,
                        "classes": list(classes),
                        "task": cfg.task,
                        "model_config": json.dumps(_asdict(vatt.cfg)),
                    }
                    torch.save(state, Path(tmp) / STATE_FILE)
                ray.train.report(
                    {"step": step, **last_metrics},
                    checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None,
                    checkpoint_dir_name=f"checkpoint_{step:09d}",
                )

    telemetry.close()
    if rank == 0:
        report = {
            "task": cfg.task,
            "init": cfg.init,
            "source": source,
            "run_dir": run_dir,
            "dataset": {
                "split" if cfg.task == "video" else "fold": (
                    cfg.data.split if cfg.task == "video" else cfg.data.fold
                ),
                "classes": list(classes),
                "train_items": sum(u[0] for u in usable),
                "test_items": sum(u[1] for u in usable),
            },
            "errors": list(dataset.errors) + decode_errors,
            "num_errors": len(dataset.errors) + len(decode_errors),
            "steps": step,
            "resumed_at": resumed_at,
            "world_size": world,
            "batch": f"{cfg.batch_size} clips x {world} workers = {cfg.batch_size * world}",
            "first_loss": first_loss,
            "final": last_metrics,
            "eval": eval_metrics,
            "eval_history": history,
            "eval_views": {"clips": views[0], "crops": views[1]},
            "seconds_this_attempt": time.time() - began,
        }
        Path(run_dir, REPORT).write_text(json.dumps(report, indent=2))


def _asdict(model_cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(model_cfg)


def plot_accuracy(run_dir: str | os.PathLike) -> list[Path]:
    """plots/accuracy.png: training accuracy (metrics.csv) and test top-1/top-5 (eval.csv)."""
    import csv

    from matplotlib.figure import Figure  # Agg canvas: no display needed

    run_dir = Path(run_dir)

    def columns(path: Path, key: str) -> tuple[list[float], list[float]]:
        if not path.is_file():
            return [], []
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "")]
        return [float(r["step"]) for r in rows], [float(r[key]) for r in rows]

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    ax.plot(*columns(run_dir / "metrics.csv", "train_acc"), label="train (batch) accuracy")
    for key in ("top1", "top5"):
        ax.plot(*columns(run_dir / "eval.csv", key), marker="o", label=f"test {key}")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02), title=f"{run_dir.name}: accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    out = run_dir / "plots" / "accuracy.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return [out]


def check_run(cfg: FinetuneConfig):
    """Everything that can fail before Ray starts: the list files (read into the split), the
    model and its shape against the data config, enough items for the workers.

    Returns the ClassificationSet. Raises ValueError (incl. CheckpointError) naming the file
    or key."""
    from training.finetune_data import ClipSpec, load_dataset, pretrained_model_config

    dataset = load_dataset(cfg)
    model_cfg = pretrained_model_config(cfg.init)
    ClipSpec.build(cfg.task, model_cfg, cfg.data)
    if len(dataset.train) < cfg.scaling.num_workers:
        raise ValueError(
            f"{len(dataset.train)} usable training items for {cfg.scaling.num_workers} workers: "
            "every worker needs at least one (lower scaling.num_workers)"
        )
    return dataset


def run_finetune(cfg: FinetuneConfig, dataset=None) -> dict:
    """Fine-tune with Ray Train on the connected Ray cluster; returns rank 0's report (with
    `checkpoint` and `plots` added). `dataset`: the ClassificationSet `check_run` returned
    (read again when None)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.telemetry import plot_run

    cfg = cfg.with_absolute_paths()  # workers have another working directory
    if dataset is None:
        dataset = check_run(cfg)
    run_dir = cfg.run_dir()
    os.makedirs(run_dir, exist_ok=True)
    Path(run_dir, "finetune_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        finetune_loop,
        train_loop_config={"cfg": cfg, "dataset": dataset, "run_dir": run_dir},
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=cfg.storage,
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    result = trainer.fit()
    report_path = Path(run_dir, REPORT)
    report = json.loads(report_path.read_text())
    report["checkpoint"] = result.checkpoint.path if result.checkpoint else None
    report["plots"] = [str(p) for p in plot_run(run_dir) + plot_accuracy(run_dir)]
    report_path.write_text(json.dumps(report, indent=2))
    return report
