"""The objective seam: what the generic pretraining loop needs from a model family.

The loop (`training.pretrain.loop`) never names a model family. It asks an `Objective` to
build the model, to turn a loader batch into model inputs, to compute the named loss parts
from the model's outputs (negatives gathered across ranks inside), and for the clip shape the
loader must produce and the FLOPs of one training clip (for MFU). VATT is the first family
(`training.objectives.vatt`); a second one is a new subclass plus its config section, with no
change to the loop (torchtitan's TrainSpec has the same shape).

An Objective is built on the driver and pickled to every Ray Train worker, so it holds only
configs (no modules, no tensors) and builds everything heavy inside the worker.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from training.data.loader import ClipShape


class Objective(abc.ABC):
    """One model family's pretraining objective (see the module docstring)."""

    # Recorded in checkpoints and exports as the architecture they hold.
    name: str = ""
    # Loss parts beside "loss": {metric key: short label for the progress line}.
    loss_parts: dict[str, str] = {}

    @abc.abstractmethod
    def build_model(self, fresh: bool) -> nn.Module:
        """The model. `fresh`: a new run (apply any pretrained initialisation); False when a
        checkpoint is about to be loaded into it (no initialisation files are needed then)."""

    @abc.abstractmethod
    def model_config(self):
        """The typed model config (stored in checkpoints beside the architecture name)."""

    @abc.abstractmethod
    def clip_shape(self) -> ClipShape:
        """The input grid the loader must produce (frames, crop size, audio samples)."""

    @abc.abstractmethod
    def model_inputs(
        self, batch: dict, device: torch.device, dtype: torch.dtype
    ) -> dict[str, torch.Tensor]:
        """A loader batch -> the model's forward argument, on `device` (floats in `dtype`)."""

    @abc.abstractmethod
    def losses(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict,
        device: torch.device,
        *,
        rank: int,
        world_size: int,
    ) -> dict[str, torch.Tensor]:
        """{"loss": scalar with a graph, <part>: detached scalar for every key of
        `loss_parts`}. Cross-rank negatives are gathered here (rank and world are arguments)."""

    @abc.abstractmethod
    def flops_per_clip(self) -> float:
        """Training FLOPs (forward + backward) of one clip, for MFU."""
