"""DeepSpeed settings of a pretraining run and the one place its config dict is derived.

Batch arithmetic: global batch = micro_batch x grad_accum x world_size; DeepSpeed checks
the three numbers agree, so all three are written out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from training.config_io import deep_merge

if TYPE_CHECKING:
    from training.pretrain.config import TrainConfig


@dataclass(frozen=True)
class DeepSpeedConfig:
    """The knobs the DeepSpeed dict is derived from (`deepspeed_dict` below)."""

    zero_stage: int = 2
    micro_batch: int = 8  # clips per worker per forward/backward
    grad_accum: int = 1
    # "auto": bf16 on GPU, fp32 on CPU; "bf16" / "fp32" force it.
    precision: str = "auto"
    offload_optimizer: bool = False  # ZeRO-1/2/3: optimizer states in CPU memory
    offload_params: bool = False  # ZeRO-3 only: parameters in CPU memory
    # Merged last into the generated dict, for anything not covered above (logged).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"deepspeed.zero_stage={self.zero_stage}: choose 0, 1, 2 or 3")
        if self.micro_batch < 1 or self.grad_accum < 1:
            raise ValueError("deepspeed.micro_batch and deepspeed.grad_accum must be >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"deepspeed.precision={self.precision!r}: auto, bf16 or fp32")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("deepspeed.offload_params needs deepspeed.zero_stage=3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs deepspeed.zero_stage >= 1")


def use_bf16(cfg: TrainConfig, on_gpu: bool) -> bool:
    """bf16 on GPU (spec: mixed precision on accelerators), fp32 on CPU unless forced."""
    if cfg.deepspeed.precision == "auto":
        return on_gpu
    return cfg.deepspeed.precision == "bf16"


def global_batch(cfg: TrainConfig, world_size: int) -> int:
    return cfg.deepspeed.micro_batch * cfg.deepspeed.grad_accum * world_size


def contrastive_batch(cfg: TrainConfig, world_size: int) -> int:
    """Clips each contrastive loss sees (its negatives + 1): negatives are gathered across
    ranks per micro-batch, so gradient accumulation adds none."""
    return cfg.deepspeed.micro_batch * world_size


def batch_arithmetic(cfg: TrainConfig, world_size: int) -> str:
    ds = cfg.deepspeed
    return (
        f"global batch {global_batch(cfg, world_size)} = micro {ds.micro_batch} x "
        f"accumulation {ds.grad_accum} x world {world_size}; contrastive batch "
        f"{contrastive_batch(cfg, world_size)} = micro x world"
    )


def batch_warning(cfg: TrainConfig, world_size: int) -> str | None:
    """A warning when the contrastive batch is smaller than the global batch (grad_accum > 1)."""
    n, g = contrastive_batch(cfg, world_size), global_batch(cfg, world_size)
    if n == g:
        return None
    return (
        f"warning: each contrastive loss sees {n} clips (micro {cfg.deepspeed.micro_batch} x "
        f"world {world_size}), not the global batch {g}: gradient accumulation adds no "
        f"negatives (or BatchNorm statistics); for more, raise deepspeed.micro_batch or "
        f"scaling.num_workers"
    )


def deepspeed_dict(cfg: TrainConfig, world_size: int, on_gpu: bool) -> dict[str, Any]:
    """DeepSpeed config for `deepspeed.initialize(config=...)` with a client optimizer."""
    ds = cfg.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 1:
        # Overlapping reduce with backward only pays off with a separate comm stream (GPU).
        zero.update(overlap_comm=on_gpu, contiguous_gradients=True)
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": ds.micro_batch,
        "gradient_accumulation_steps": ds.grad_accum,
        "train_batch_size": global_batch(cfg, world_size),
        "zero_optimization": zero,
        "bf16": {"enabled": use_bf16(cfg, on_gpu)},
        # Our own telemetry logs every step; keep DeepSpeed's periodic prints out of the way.
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.optim.grad_clip > 0:
        out["gradient_clipping"] = cfg.optim.grad_clip
    if ds.offload_optimizer:
        # Offload normally insists on DeepSpeedCPUAdam (a JIT-compiled op); torch's AdamW
        # steps the offloaded fp32 states just as well, only slower.
        out["zero_force_ds_cpu_optimizer"] = False
    return deep_merge(out, ds.extra)
