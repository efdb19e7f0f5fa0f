"""The fine-tuning loop: Ray Train workers training one pretrained tower plus a new linear
head with plain DDP (gloo on CPU, NCCL on GPU), as `vatt finetune` runs it.

Per worker (`finetune_loop`), in small named steps around one `FinetuneWorker`:

  setup        the model from `init` (export, checkpoint or run folder, or a preset's random
               init) -> TowerClassifier -> DDP -> SGD with momentum, warm-up + cosine -> the
               run's newest Ray checkpoint restored -> this worker's share of the train and
               test files decoded once (`data.ClipCache`)
  train_step   a random window per item, crop + flip (video) or mixup (audio), label-smoothed
               cross-entropy; loss and accuracy stay on the device until a log step
  log_step     reduced over ranks, one progress line, metrics.csv + TensorBoard on rank 0
  evaluate     every worker scores its share over clips x crops views; rank 0 gathers top-1/5
  checkpoint   rank 0's state through Ray Train (`training.distributed.report`)
  write_report report.json on rank 0

The driver (`run_finetune`) reads the list files, checks the model's shape against the data
config before any worker starts (`check_run`), fits the loop and draws the plots.
Outputs in <storage>/<name>: metrics.csv (loss, train_acc, lr, clips/s per log step),
eval.csv (top1, top5), tensorboard/, plots/*.png, report.json, checkpoint_*/.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import distributed
from training.finetune.config import FinetuneConfig

STATE_FILE = "finetune_state.pt"
REPORT = "report.json"


@dataclass
class FinetuneState:
    """Counters and results that travel in checkpoints."""

    step: int = 0
    resumed_at: int = 0  # 0 = a fresh start
    first_loss: float | None = None
    history: list = field(default_factory=list)  # every evaluation: {step, top1, top5, ...}
    eval_last: dict | None = None
    last_metrics: dict = field(default_factory=dict)

    def carried(self) -> dict:
        return {
            "first_loss": self.first_loss,
            "eval_history": self.history,
            "eval_last": self.eval_last,
            "last_metrics": self.last_metrics,
        }


@dataclass
class FinetuneWorker:
    """Everything one fine-tuning worker holds."""

    cfg: FinetuneConfig
    ctx: distributed.WorkerContext
    dataset: Any  # training.eval.benchmarks.ClassificationSet
    run_dir: str
    module: Any  # the TowerClassifier
    model: Any  # the module, under DDP on more than one worker
    optimizer: Any
    scheduler: Any
    source: dict  # where the pretrained tower came from
    state: FinetuneState = field(default_factory=FinetuneState)
    train: Any = None  # data.ClipCache of this worker's share
    test: Any = None
    usable: list = field(default_factory=list)  # (train, test) items per rank
    decode_errors: list = field(default_factory=list)
    telemetry: Any = None
    gen: Any = None  # torch.Generator of this worker's examples
    order: list = field(default_factory=list)  # the current pass over the training items
    # Sums since the last log line, on the device: loss x examples, correct, examples.
    window: Any = None
    window_time: list = field(default_factory=lambda: [0.0, 0.0, 0])  # data s, step s, steps

    @property
    def views(self) -> tuple[int, int]:
        """(clips, crops) per test item; audio has no spatial crops."""
        return self.cfg.eval.clips, self.cfg.eval.crops if self.cfg.task == "video" else 1


# --- setup ---------------------------------------------------------------------------------


def _build(cfg: FinetuneConfig, ctx, dataset, run_dir: str) -> FinetuneWorker:
    """The classifier (DDP on several workers), SGD and its schedule."""
    import torch

    from training.finetune.config import finetune_lr
    from training.finetune.model import TowerClassifier, load_backbone

    size = (cfg.data.frames, cfg.data.height, cfg.data.width)
    vatt, source = load_backbone(cfg.init, cfg.droptoken_rate, cfg.seed, size)
    torch.manual_seed(cfg.seed)  # the same head on every rank (DDP also broadcasts rank 0's)
    module = TowerClassifier(vatt, cfg.task, len(dataset.classes), cfg.dropout).to(ctx.device)
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
    model = distributed.wrap_ddp(module, ctx.world_size)
    return FinetuneWorker(cfg, ctx, dataset, run_dir, module, model, optimizer, scheduler, source)


def _restore(w: FinetuneWorker) -> None:
    import torch

    checkpoint = distributed.reported_checkpoint()
    if checkpoint is None:
        return
    state = torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
    w.module.load_state_dict(state["model"])
    w.optimizer.load_state_dict(state["optimizer"])
    w.scheduler.load_state_dict(state["scheduler"])
    carried = state["carried"]
    w.state = FinetuneState(
        step=int(state["step"]),
        resumed_at=int(state["step"]),
        first_loss=carried.get("first_loss"),
        history=carried.get("eval_history", []),
        eval_last=carried.get("eval_last"),
        last_metrics=carried.get("last_metrics", {}),
    )
    w.ctx.log(f"resumed from {checkpoint} at step {w.state.step}")


def _decode_share(w: FinetuneWorker) -> None:
    """Each worker decodes its own share, once; failures are error lines, not crashes."""
    from training.finetune.data import ClipCache, ClipSpec

    cfg, ctx, dataset = w.cfg, w.ctx, w.dataset
    spec = ClipSpec.build(cfg.task, w.module.vatt.cfg, cfg.data)
    t0 = time.perf_counter()
    w.train = ClipCache(dataset.train[ctx.rank :: ctx.world_size], spec)
    w.test = ClipCache(dataset.test[ctx.rank :: ctx.world_size], spec)
    gathered = distributed.all_gather_object(w.train.errors + w.test.errors, ctx.world_size)
    w.decode_errors = [e for part in gathered for e in part]
    w.usable = distributed.all_gather_object((len(w.train), len(w.test)), ctx.world_size)
    ctx.log(
        f"decoded {sum(u[0] for u in w.usable)} train + {sum(u[1] for u in w.usable)} test "
        f"items on {ctx.world_size} workers in {time.perf_counter() - t0:.1f} s "
        f"({len(w.decode_errors)} undecodable)"
    )
    if len(w.train) == 0:
        raise RuntimeError(
            f"worker {ctx.rank}: none of its {len(dataset.train[ctx.rank :: ctx.world_size])} "
            f"training items could be decoded ({'; '.join(w.train.errors[:2])})"
        )


def setup(loop_config: dict) -> FinetuneWorker | None:
    """A ready worker, or None when the run already reached max_steps."""
    import torch

    from training.telemetry import Telemetry

    cfg: FinetuneConfig = loop_config["cfg"]
    ctx = distributed.worker_context(cfg.scaling)
    w = _build(cfg, ctx, loop_config["dataset"], loop_config["run_dir"])
    _restore(w)
    if w.state.step >= cfg.max_steps:
        ctx.log(f"run already complete at step {w.state.step} (max_steps={cfg.max_steps}); "
                "nothing to do")  # fmt: skip
        return None
    _decode_share(w)
    w.telemetry = Telemetry(w.run_dir, enabled=ctx.rank == 0, resume_step=w.state.step + 1)
    # Resumed runs draw a different stream (seeded by the start step), as pretraining does.
    w.gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + ctx.rank * 7919 + w.state.step)
    return w


# --- the steps -----------------------------------------------------------------------------


def train_step(w: FinetuneWorker) -> None:
    """One SGD step on a batch of random windows (loss and accuracy stay on the device)."""
    import torch

    from training.finetune.model import loss_fn, mixup

    cfg, device = w.cfg, w.ctx.device
    t_step = time.perf_counter()
    picks = []
    while len(picks) < cfg.batch_size:
        if not w.order:
            w.order = torch.randperm(len(w.train), generator=w.gen).tolist()
        picks.append(w.order.pop())
    x = torch.stack([w.train.train_example(i, cfg.augment, w.gen) for i in picks]).to(device)
    y = torch.tensor([w.train.items[i].label for i in picks], device=device)  # (B,)
    data_s = time.perf_counter() - t_step
    mixed, target = None, y
    if cfg.task == "audio" and cfg.mixup_alpha > 0:
        x, y, y_b, lam = mixup(x, y, cfg.mixup_alpha, w.gen, cfg.mixup_per_example)
        mixed, target = (y_b, lam), torch.where(lam >= 0.5, y, y_b)  # accuracy: major label
    distributed.seed_step(cfg.seed, w.ctx.rank, w.state.step)  # dropout/DropToken per rank
    logits = w.model(x)  # (B, classes)
    loss = loss_fn(logits, y, cfg.optim.label_smoothing, mixed)
    w.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(w.module.parameters(), cfg.optim.grad_clip)
    w.optimizer.step()
    w.scheduler.step()
    w.state.step += 1
    sums = torch.stack(
        [
            loss.detach().double() * len(picks),
            (logits.detach().argmax(1) == target).sum().double(),
            torch.tensor(float(len(picks)), dtype=torch.float64, device=device),
        ]
    )
    w.window = sums if w.window is None else w.window + sums
    w.window_time[0] += data_s
    w.window_time[1] += time.perf_counter() - t_step
    w.window_time[2] += 1


def log_step(w: FinetuneWorker, lr: float) -> None:
    from training.telemetry import format_progress

    world = w.ctx.world_size
    loss_sum, correct, seen, data_sum, time_sum, steps = distributed.all_reduce(
        [*w.window.tolist(), *w.window_time], world
    )
    metrics = {
        "loss": loss_sum / seen,
        "train_acc": correct / seen,
        "lr": lr,
        "clips_per_s": seen / (time_sum / world),
        "step_time_s": time_sum / steps,  # mean over ranks and steps
        # Cutting + augmenting clips in the training process (no loader workers).
        "data_wait_frac": data_sum / max(time_sum, 1e-9),
    }
    w.window, w.window_time = None, [0.0, 0.0, 0]
    if w.state.first_loss is None:
        w.state.first_loss = metrics["loss"]
    w.state.last_metrics = metrics
    w.telemetry.log(w.state.step, metrics)
    progress = format_progress(w.state.step, w.cfg.max_steps, metrics)
    w.ctx.log(f"{progress} | acc {metrics['train_acc']:.3f}")


def evaluate(w: FinetuneWorker) -> dict:
    """Top-1/top-5 over the whole test split (each worker scores its share)."""
    from training.eval.metrics import classification_scores
    from training.finetune.model import predict_items

    w.model.eval()
    mine = predict_items(w.module, w.test, *w.views, w.cfg.eval.batch_size)
    w.model.train()
    rows = [(k, y, logits.tolist()) for k, y, logits in mine]
    gathered = distributed.all_gather_object(rows, w.ctx.world_size)
    metrics = classification_scores([r for part in gathered for r in part], len(w.dataset.classes))
    w.telemetry.log_eval(w.state.step, metrics)
    w.ctx.log(
        f"test @ step {w.state.step}: top-1 {metrics['top1']:.3f} top-5 {metrics['top5']:.3f} "
        f"on {metrics['num_scored']} items ({w.views[0]} clips x {w.views[1]} crops; "
        f"chance {1 / len(w.dataset.classes):.3f})"
    )
    w.state.eval_last = metrics
    w.state.history.append({"step": w.state.step, **metrics})
    return metrics


def save_checkpoint(w: FinetuneWorker) -> None:
    """Rank 0 saves model, optimizer, schedule and counters; every rank reports."""
    import torch

    step = w.state.step
    with tempfile.TemporaryDirectory(prefix="vatt-finetune-") as tmp:
        if w.ctx.rank == 0:
            state = {
                "step": step,
                "model": w.module.state_dict(),
                "optimizer": w.optimizer.state_dict(),
                "scheduler": w.scheduler.state_dict(),
                "carried": w.state.carried(),
                "classes": list(w.dataset.classes),
                "task": w.cfg.task,
                "model_config": json.dumps(dataclasses.asdict(w.module.vatt.cfg)),
            }
            torch.save(state, Path(tmp) / STATE_FILE)
        distributed.report(
            {"step": step, **w.state.last_metrics},
            tmp if w.ctx.rank == 0 else None,
            f"checkpoint_{step:09d}",
        )


def write_report(w: FinetuneWorker, began: float) -> None:
    """report.json (rank 0): the split, errors, losses, the last and every evaluation."""
    w.telemetry.close()
    if w.ctx.rank != 0:
        return
    cfg, world = w.cfg, w.ctx.world_size
    part = {"kinetics": "csv", "esc50": "fold"}.get(cfg.dataset, "split")
    which = {"split": cfg.data.split, "fold": cfg.data.fold, "csv": cfg.data.kinetics_test_csv}
    tok = w.module.vatt.cfg.tokenizer
    report = {
        "task": cfg.task,
        "init": cfg.init,
        "source": w.source,
        "run_dir": w.run_dir,
        "dataset": {
            "name": cfg.dataset,
            part: which[part],
            "classes": list(w.dataset.classes),
            "train_items": sum(u[0] for u in w.usable),
            "test_items": sum(u[1] for u in w.usable),
        },
        "errors": list(w.dataset.errors) + w.decode_errors,
        "num_errors": len(w.dataset.errors) + len(w.decode_errors),
        "steps": w.state.step,
        "resumed_at": w.state.resumed_at,
        "world_size": world,
        "batch": f"{cfg.batch_size} clips x {world} workers = {cfg.batch_size * world}",
        "first_loss": w.state.first_loss,
        "final": w.state.last_metrics,
        "eval": w.state.eval_last,
        "eval_history": w.state.history,
        "eval_views": {"clips": w.views[0], "crops": w.views[1]},
        "clip": {
            "frames": tok.frames,
            "height": tok.height,
            "width": tok.width,
            "audio_samples": tok.audio_samples,
            "pretrained": w.source.get("pretrained_clip"),
        },
        "seconds_this_attempt": time.time() - began,
    }
    Path(w.run_dir, REPORT).write_text(json.dumps(report, indent=2))


def finetune_loop(loop_config: dict) -> None:
    """One Ray Train worker: see the module docstring for the order of things."""
    began = time.time()
    w = setup(loop_config)
    if w is None:
        return
    cfg = w.cfg
    w.model.train()
    while w.state.step < cfg.max_steps:
        lr = w.scheduler.get_last_lr()[0]
        train_step(w)
        step, is_last = w.state.step, w.state.step == cfg.max_steps
        if step == 1 or distributed.due(step, cfg.log_every, is_last):
            log_step(w, lr)
        if distributed.due(step, cfg.eval.every_steps, is_last):
            evaluate(w)
        if distributed.due(step, cfg.checkpoint.every_steps, is_last):
            save_checkpoint(w)
    write_report(w, began)


# --- The driver ----------------------------------------------------------------------------


def check_run(cfg: FinetuneConfig):
    """Everything that can fail before Ray starts: the list files (read into the split), the
    model and its shape against the data config, enough items for the workers.

    Returns the ClassificationSet. Raises ValueError (incl. CheckpointError) naming the file
    or key."""
    from training.finetune.data import ClipSpec, check_clip_shape, load_dataset
    from training.finetune.model import pretrained_model_config

    dataset = load_dataset(cfg)
    model_cfg = pretrained_model_config(cfg.init)
    check_clip_shape(model_cfg, cfg.data)
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
    from training.telemetry import plot_accuracy, plot_run

    cfg = cfg.with_absolute_paths()  # workers have another working directory
    if dataset is None:
        dataset = check_run(cfg)
    run_dir = cfg.run_dir()
    os.makedirs(run_dir, exist_ok=True)
    Path(run_dir, "finetune_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    loop_config = {"cfg": cfg, "dataset": dataset, "run_dir": run_dir}
    checkpoint = distributed.fit(
        finetune_loop, loop_config, name=cfg.name, storage_path=cfg.storage,
        scaling=cfg.scaling, checkpoint=cfg.checkpoint,
    )  # fmt: skip
    report_path = Path(run_dir, REPORT)
    report = json.loads(report_path.read_text())
    report["checkpoint"] = checkpoint
    report["plots"] = [str(p) for p in plot_run(run_dir) + plot_accuracy(run_dir)]
    report_path.write_text(json.dumps(report, indent=2))
    return report


__all__ = ["check_run", "finetune_loop", "run_finetune"]
