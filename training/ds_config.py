"""The one place a DeepSpeed config dict is derived from a TrainConfig (and explained).

Batch arithmetic: global batch = micro_batch x grad_accum x world_size; DeepSpeed checks
the three numbers agree, so all three are written out.
"""

from __future__ import annotations

from typing import Any

from training.config import TrainConfig


def use_bf16(cfg: TrainConfig, on_gpu: bool) -> bool:
    """bf16 on GPU (spec: mixed precision on accelerators), fp32 on CPU unless forced."""
    if cfg.deepspeed.precision == "auto":
        return on_gpu
    return cfg.deepspeed.precision == "bf16"


def global_batch(cfg: TrainConfig, world_size: int) -> int:
    return cfg.deepspeed.micro_batch * cfg.deepspeed.grad_accum * world_size


def batch_arithmetic(cfg: TrainConfig, world_size: int) -> str:
    ds = cfg.deepspeed
    return (
        f"global batch {global_batch(cfg, world_size)} = micro {ds.micro_batch} x "
        f"accumulation {ds.grad_accum} x world {world_size}"
    )


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = (
            _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


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
    return _deep_update(out, ds.extra)
