"""The ALPRO objective (Li et al., CVPR 2022): VTC + VTM + MLM + PEM, unit weights, as the second
family of the objective seam (`training.objectives.base`).

  VTC  symmetric contrastive loss of the [CLS] projections, (v2t + t2v) / 2, negatives from
       every rank through `contrastive.gather_with_grad` (targets at the *global* row
       rank * B + i, not the node-local rank of the release), the exact scaling VATT's losses
       use: mean over ranks of the per-rank losses == the single-process loss.
  VTM  binary matching on the fusion [CLS] for B positives and 2B hard negatives (one video per
       text, one text per video) drawn by the model from the softmax of the local VTC
       similarities with the positive excluded (`training.model.alpro.hard_negatives`; with
       `vtm_duplicate_cos` < 1 its near-duplicates too), positives weighted `vtm_pos_weight`.
  MLM  15% of the non-special caption tokens, 80% [MASK] / 10% a random piece / 10% kept,
       predicted from the fusion outputs (the video is visible); with `content_mask_prob` a
       caption also has every content word selected (`content_word_mask`).
  PEM  a frozen VTC prompter, outside the DeepSpeed engine, scores a random crop of 30-50% of
       the frame area (snapped to the patch grid, resized to the full frame) against the
       prompts "A video of {ENTITY}" (12 templates, averaged) of M entities; the softmax is
       the soft pseudo-label, dropped when its largest *probability* is under the threshold
       (the release compares the argmax index); the model predicts it from the fusion outputs
       pooled over the crop's patches.

A prompter run (model fusion_layers=0) trains VTC only. The entity list is the M most
frequent content words of the corpus captions or a file (`entity_vocabulary`, `read_entities`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config_io import require_at_least
from training.data.loader import ClipShape
from training.data.wordpiece import MASK_ID, SPECIAL_TOKENS, load_wordpiece
from training.objectives.base import Objective
from training.objectives.contrastive import Gather, gather_with_grad

# 12 prompt templates, averaged per entity (ALPRO ensembles 12; these are ours).
TEMPLATES = (
    "A video of {}.",
    "A video of a {}.",
    "A video of the {}.",
    "A footage of {}.",
    "A footage of a {}.",
    "A clip of {}.",
    "A clip of a {}.",
    "A clip showing the {}.",
    "A video showing {}.",
    "A short video of {}.",
    "A video about {}.",
    "A recording of {}.",
)

# Words that are never entities: function words, and the caption boilerplate of video corpora.
STOPWORDS = frozenset(
    """a an the and or but of to in on at by for with from into onto over under up down out off
    is are was were be been being am it its this that these those there here then than as so
    very just also not no yes he she they we you i me my your his her their our them us him
    who whom which what when where why how all any some each every both few more most other
    such only own same too can will would should could may might must do does did doing done
    have has had having get gets got one two three four five six seven eight nine ten
    video videos clip clips footage shot shots view views close closeup stock scene scenes
    shows showing show shown side left right background front top while during through
    about after before again against between""".split()
)


@dataclass(frozen=True)
class AlproLossConfig:
    """The `alpro` section of a training config: stages, weights and PEM settings."""

    # A trained prompter for PEM: its run folder, checkpoint or export (the first stage).
    prompter: str = ""
    # Entity file (one per line, the first model.num_entities are used); "" = the most
    # frequent content words of the corpus captions.
    entities: str = ""
    # Unit weights: the paper sums the four losses.
    vtc_weight: float = 1.0
    vtm_weight: float = 1.0
    mlm_weight: float = 1.0
    pem_weight: float = 1.0
    # BERT's masking rate; of the masked tokens 80% [MASK], 10% random, 10% kept.
    mlm_prob: float = 0.15
    # The chance that a caption also has every content word (the words entities are drawn
    # from: not a stopword, 3+ letters; whole words) selected for MLM. 0 = the release (random
    # pieces only). With its content words hidden the caption no longer names what the clip
    # shows, so the fusion encoder has to read them off the video (docs/alpro.md).
    content_mask_prob: float = 0.0
    # Weight of the positive class in the VTM cross-entropy. The release trains 1 positive per
    # 2 hard negatives unweighted (1.0), which learns P(match) under a 1:2 prior; 2.0 gives
    # both classes equal total weight, so P(match) > 0.5 is the balanced decision.
    vtm_pos_weight: float = 1.0
    # VTM hard negatives skip near-duplicates of the positive: a video (text) whose VTC
    # cosine with the positive's video (text) is above this. 1.0 = none skipped (the release).
    # A near-duplicate labelled "no match" is a false negative the head can only memorise.
    vtm_duplicate_cos: float = 1.0
    # Crop area as a fraction of the frame (ALPRO: 30-50%).
    crop_min: float = 0.3
    crop_max: float = 0.5
    # Pseudo-labels whose top probability is below this are dropped (the release's 0.2).
    pem_threshold: float = 0.2

    def __post_init__(self) -> None:
        require_at_least(self, "alpro", ("vtc_weight", "vtm_weight", "mlm_weight", "pem_weight"), 0)
        if not 0 < self.mlm_prob < 1:
            raise ValueError(f"alpro.mlm_prob={self.mlm_prob} must be in (0, 1)")
        if not 0 <= self.content_mask_prob <= 1:
            raise ValueError(f"alpro.content_mask_prob={self.content_mask_prob} must be in [0, 1]")
        if not self.vtm_pos_weight > 0:
            raise ValueError(f"alpro.vtm_pos_weight={self.vtm_pos_weight} must be > 0")
        if not -1 <= self.vtm_duplicate_cos <= 1:
            raise ValueError(f"alpro.vtm_duplicate_cos={self.vtm_duplicate_cos} must be in [-1, 1]")
        if not 0 < self.crop_min <= self.crop_max <= 1:
            raise ValueError(
                f"alpro.crop_min={self.crop_min}, crop_max={self.crop_max}: need "
                "0 < crop_min <= crop_max <= 1"
            )
        if not 0 <= self.pem_threshold < 1:
            raise ValueError(f"alpro.pem_threshold={self.pem_threshold} must be in [0, 1)")


# ---- Entities and prompts ------------------------------------------------------------------


def content_words(text: str) -> list[str]:
    """Lower-cased alphabetic words of 3+ letters that are not stopwords."""
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def entity_vocabulary(captions: Iterable[str], count: int) -> list[str]:
    """The `count` most frequent content words of `captions` (ties: alphabetical).

    Raises ValueError when the captions hold fewer distinct content words."""
    freq = Counter(w for text in captions for w in content_words(text))
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) < count:
        raise ValueError(
            f"the captions hold {len(ranked)} distinct content words, fewer than "
            f"model.num_entities={count}: lower it or give alpro.entities=FILE"
        )
    return [w for w, _ in ranked[:count]]


def read_entities(path: str | Path, count: int) -> list[str]:
    """The first `count` non-empty lines of an entity file. ValueError names the file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the entity file: {e}") from None
    entities = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if len(entities) < count:
        raise ValueError(
            f"{path}: {len(entities)} distinct entities, fewer than model.num_entities={count}"
        )
    return entities[:count]


def prompt_ids(tokenizer, entities: list[str], max_len: int) -> torch.Tensor:
    """Token ids (len(TEMPLATES), M, max_len) of every template filled with every entity."""
    ids = torch.zeros(len(TEMPLATES), len(entities), max_len, dtype=torch.int64)
    for i, template in enumerate(TEMPLATES):
        for j, enc in enumerate(tokenizer.encode_batch([template.format(e) for e in entities])):
            row = enc.ids[:max_len]
            ids[i, j, : len(row)] = torch.tensor(row)
    return ids


# ---- MLM masking ---------------------------------------------------------------------------


def mask_tokens(
    text_ids: torch.Tensor,
    vocab_size: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
    also: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of the non-special tokens.

    Args: text_ids (B, L) int64 (0 = padding); vocab_size: ids drawn for random replacements
    lie in [5, vocab_size) (never a special token); also (B, L) bool: tokens selected on top
    of the random `prob` (content words, `content_word_mask`).
    Returns (mlm_ids (B, L), labels (B, L) = the original id where a token was selected, -100
    elsewhere). Of the selected tokens 80% become [MASK], 10% a random piece, 10% stay.
    """
    first = len(SPECIAL_TOKENS)
    candidate = text_ids >= first  # [PAD], [UNK], [CLS], [SEP], [MASK] are never targets
    u = torch.rand(text_ids.shape, generator=generator, device=text_ids.device)
    selected = candidate & (u < prob)
    if also is not None:
        selected = selected | (candidate & also)
    how = torch.rand(text_ids.shape, generator=generator, device=text_ids.device)
    random_ids = torch.randint(
        first, vocab_size, text_ids.shape, generator=generator, device=text_ids.device
    )
    mlm_ids = torch.where(selected & (how < 0.8), MASK_ID, text_ids)
    mlm_ids = torch.where(selected & (how >= 0.8) & (how < 0.9), random_ids, mlm_ids)
    labels = torch.where(selected, text_ids, -100)
    return mlm_ids, labels


def vocabulary_pieces(tokenizer) -> list[str]:
    """The tokenizer's pieces by id (id -> piece string)."""
    pieces = [""] * tokenizer.get_vocab_size()
    for token, i in tokenizer.get_vocab().items():
        pieces[i] = token
    return pieces


def content_word_mask(text_ids: torch.Tensor, pieces: list[str]) -> torch.Tensor:
    """Every piece of every content word (`content_words`: not a stopword, 3+ letters) of each
    caption, whole words: the pieces of a word are joined before the test.

    Args: text_ids (B, L); pieces: id -> piece (`vocabulary_pieces`). Returns (B, L) bool.
    """
    first = len(SPECIAL_TOKENS)
    out = torch.zeros(text_ids.shape, dtype=torch.bool)
    for b, row in enumerate(text_ids.tolist()):
        word, span = "", []
        for p, i in enumerate([*row, 0]):  # the trailing 0 closes the last word
            piece = pieces[i] if first <= i < len(pieces) else None
            if piece is not None and piece.startswith("##") and span:
                word, span = word + piece[2:], [*span, p]
                continue
            if span and content_words(word) == [word]:
                out[b, span] = True
            word, span = (piece, [p]) if piece is not None else ("", [])
    return out.to(text_ids.device)


# ---- PEM crops -----------------------------------------------------------------------------


def crop_cell_sizes(h: int, w: int, area_min: float, area_max: float) -> list[tuple[int, int]]:
    """Every (rows, cols) of the h x w patch grid whose area fraction lies in [min, max]."""
    sizes = [
        (r, c)
        for r in range(1, h + 1)
        for c in range(1, w + 1)
        if area_min - 1e-9 <= r * c / (h * w) <= area_max + 1e-9
    ]
    if not sizes:
        raise ValueError(
            f"no crop of a {h}x{w} patch grid covers {area_min:.0%}-{area_max:.0%} of the frame: "
            "widen alpro.crop_min/crop_max"
        )
    return sizes


def random_crops(
    batch: int,
    grid: tuple[int, int],
    area: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random crop per clip, on the patch grid.

    Args: batch B; grid (h, w) patches; area (min, max) fraction of the frame.
    Returns boxes (B, 4) int64 (top, left, rows, cols) in patches and mask (B, h, w) bool.
    """
    h, w = grid
    sizes = torch.tensor(crop_cell_sizes(h, w, *area))  # (S, 2)
    pick = sizes[torch.randint(len(sizes), (batch,), generator=generator)]  # (B, 2)
    top = (torch.rand(batch, generator=generator) * (h - pick[:, 0] + 1)).long()
    left = (torch.rand(batch, generator=generator) * (w - pick[:, 1] + 1)).long()
    boxes = torch.stack([top, left, pick[:, 0], pick[:, 1]], dim=1)  # (B, 4)
    rows = torch.arange(h)[None, :, None]  # (1, h, 1)
    cols = torch.arange(w)[None, None, :]  # (1, 1, w)
    mask = (
        (rows >= top[:, None, None])
        & (rows < (top + pick[:, 0])[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + pick[:, 1])[:, None, None])
    )  # (B, h, w)
    return boxes, mask


def crop_video(video: torch.Tensor, boxes: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut each clip's box (in patches) and resize it back to the full frame.

    Args: video (B, T, H, W, 3); boxes (B, 4) (top, left, rows, cols). Returns (B, T, H, W, 3).
    """
    B, T, H, W, C = video.shape
    out = []
    for clip, (top, left, rows, cols) in zip(video, boxes.tolist()):
        region = clip[:, top * patch : (top + rows) * patch, left * patch : (left + cols) * patch]
        region = region.permute(0, 3, 1, 2).float()  # (T, 3, h', w')
        resized = F.interpolate(region, size=(H, W), mode="bilinear", align_corners=False)
        out.append(resized.permute(0, 2, 3, 1))  # (T, H, W, 3)
    return torch.stack(out).to(video.dtype)


# ---- The prompter --------------------------------------------------------------------------


class Prompter(nn.Module):
    """A trained VTC model frozen with its entity prompt embeddings; gives PEM pseudo-labels.

    It never enters the DeepSpeed engine: no optimizer state, no gradient, eval mode always.
    """

    def __init__(self, model: nn.Module, prompts: torch.Tensor, threshold: float):
        """Args: model an `Alpro` (any, its encoders and VTC projections are used); prompts
        (templates, M, L) ids from `prompt_ids`; threshold: minimum top probability."""
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.threshold = threshold
        with torch.no_grad():
            Tn, M, L = prompts.shape
            feats = model.encode_text(prompts.reshape(Tn * M, L))["text_vt"]  # (Tn*M, P)
            feats = F.normalize(feats.float(), dim=-1).reshape(Tn, M, -1).mean(dim=0)  # (M, P)
        self.register_buffer("entity_features", F.normalize(feats, dim=-1))

    def train(self, mode: bool = True) -> Prompter:
        return super().train(False)  # frozen: BatchNorm-free, but dropout stays off too

    @torch.no_grad()
    def probabilities(self, video: torch.Tensor) -> torch.Tensor:
        """Softmax over entities (B, M) of clips (B, T, H, W, 3)."""
        v = F.normalize(self.model.encode_video(video)["video_vt"].float(), dim=-1)  # (B, P)
        temp = self.model.temperature().float()
        return F.softmax(v @ self.entity_features.T / temp, dim=-1)

    @torch.no_grad()
    def pseudo_labels(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (soft labels (B, M), keep (B,) bool: top probability >= threshold)."""
        probs = self.probabilities(crops)
        return probs, probs.max(dim=1).values >= self.threshold


# ---- Losses --------------------------------------------------------------------------------


def vtc_loss(
    video_vt: torch.Tensor,
    text_vt: torch.Tensor,
    temp: torch.Tensor,
    rank: int = 0,
    world_size: int = 1,
    gather: Gather = gather_with_grad,
) -> torch.Tensor:
    """ALPRO's VTC: (CE(v2t) + CE(t2v)) / 2 over the global batch, rows of this rank.

    Args: video_vt, text_vt (B, P) local, unnormalised; temp scalar; rank, world_size, gather
    as in `contrastive.mil_nce` (equal B on every rank).
    Returns this rank's mean over its rows; the mean over ranks is the single-process loss,
    and with `gather_with_grad` the averaged gradients are exactly the single-process ones.
    """
    with torch.autocast(device_type=video_vt.device.type, enabled=False):
        v = F.normalize(video_vt.float(), dim=-1)  # (B, P)
        t = F.normalize(text_vt.float(), dim=-1)  # (B, P)
        v_all = gather(v, rank, world_size)  # (W*B, P)
        t_all = gather(t, rank, world_size)  # (W*B, P)
        temp = temp.float()
        B = v.shape[0]
        targets = torch.arange(B, device=v.device) + rank * B  # global rows of the positives
        loss_v2t = F.cross_entropy(v @ t_all.T / temp, targets)  # (B, W*B) logits
        loss_t2v = F.cross_entropy(t @ v_all.T / temp, targets)
        return (loss_v2t + loss_t2v) / 2


def vtm_loss(logits: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """CE of (3B, 2) logits laid out [B positives; 2B negatives] (labels 1, then 0), the
    positives weighted `pos_weight` (a weighted mean: 1.0 is the release's plain mean)."""
    B = logits.shape[0] // 3
    labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(logits.device)
    weight = torch.tensor([1.0, pos_weight], device=logits.device)
    return F.cross_entropy(logits.float(), labels, weight=weight)


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over the selected tokens of (B, L, V) logits; 0 (with a graph) when none is."""
    ce = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
    )
    return ce / (labels != -100).sum().clamp(min=1)


def pem_loss(logits: torch.Tensor, soft_labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Soft-label CE of (B, M) logits, over the kept rows; 0 (with a graph) when none is."""
    ce = -(soft_labels.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=1)  # (B,)
    ce = torch.where(keep, ce, 0.0)
    return ce.sum() / keep.sum().clamp(min=1)


# ---- The objective -------------------------------------------------------------------------

PromptLoader = Callable[[str], nn.Module]


class AlproObjective(Objective):
    """ALPRO in the objective seam.

    Args:
        model_cfg: `training.model.AlproConfig` (a prompter when fusion_layers == 0).
        loss: `AlproLossConfig`.
        tokenizer: the WordPiece tokenizer.json the loader encodes captions with.
        max_words: ids per caption (data.max_words).
        entities: the entity list (M = model_cfg.num_entities) for PEM prompts.
        load_prompter: path -> trained prompter model (eval mode); called in the worker.
    Everything heavy (tokenizer, prompter) is built in the worker on first use.
    """

    name = "alpro"

    def __init__(
        self,
        model_cfg,
        loss: AlproLossConfig,
        *,
        tokenizer: str = "",
        max_words: int = 32,
        entities: tuple[str, ...] = (),
        load_prompter: PromptLoader | None = None,
    ):
        self.cfg, self.loss = model_cfg, loss
        self.tokenizer, self.max_words = tokenizer, max_words
        self.entities, self.load_prompter = tuple(entities), load_prompter
        self.pem = bool(model_cfg.num_entities) and loss.pem_weight > 0
        if self.pem:
            if not loss.prompter:
                raise ValueError(
                    "alpro.prompter is empty: PEM needs a trained prompter run "
                    "(vatt train --config alpro-prompter-debug first), or set alpro.pem_weight=0"
                )
            if len(self.entities) != model_cfg.num_entities:
                raise ValueError(
                    f"{len(self.entities)} entities for model.num_entities={model_cfg.num_entities}"
                )
            crop_cell_sizes(*model_cfg.grid[1:], loss.crop_min, loss.crop_max)  # fail early
        self.loss_parts = (
            {"vtc": "vtc"}
            if model_cfg.is_prompter
            else {"vtc": "vtc", "vtm": "vtm", "mlm": "mlm", "pem": "pem"}
        )
        self._prompter = None  # built in the worker
        self._pieces = None  # the tokenizer's pieces by id, read in the worker

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_prompter": None, "_pieces": None}  # built there

    def build_model(self, fresh: bool) -> nn.Module:
        from training.model import Alpro

        return Alpro(self.cfg)  # from scratch: no ImageNet ViT or BERT weights here

    def model_config(self):
        return self.cfg

    def clip_shape(self) -> ClipShape:
        return ClipShape.from_model(self.cfg)

    def prompter(self, device: torch.device) -> Prompter:
        """The frozen prompter with its entity prompts (loaded once per worker)."""
        if self._prompter is None:
            model = self.load_prompter(self.loss.prompter)
            tok = load_wordpiece(self.tokenizer)
            prompts = prompt_ids(tok, list(self.entities), self.max_words)
            self._prompter = Prompter(model.to(device), prompts.to(device), self.loss.pem_threshold)
        return self._prompter

    def content_words_of(self, text_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the content words of each caption (`content_word_mask`)."""
        if self._pieces is None:
            self._pieces = vocabulary_pieces(load_wordpiece(self.tokenizer))
        return content_word_mask(text_ids, self._pieces)

    def model_inputs(self, batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
        video = batch["video"].to(device, dtype, non_blocking=True)  # (B, T, H, W, 3)
        text_ids = batch["text_ids"][:, 0].to(device, non_blocking=True)  # (B, L): caption 0
        inputs = {"video": video, "text_ids": text_ids}
        if self.cfg.is_prompter:
            return inputs
        if self.loss.vtm_duplicate_cos < 1.0:
            inputs["vtm_duplicate_cos"] = self.loss.vtm_duplicate_cos
        if self.loss.mlm_weight > 0:
            whole = None
            if self.loss.content_mask_prob > 0:
                chosen = torch.rand(text_ids.shape[0], device=device) < self.loss.content_mask_prob
                whole = self.content_words_of(text_ids) & chosen[:, None]  # (B, L)
            inputs["mlm_ids"], batch["mlm_labels"] = mask_tokens(
                text_ids, self.cfg.vocab_size, self.loss.mlm_prob, also=whole
            )
        if self.pem:
            boxes, inputs["pem_mask"] = random_crops(
                video.shape[0], self.cfg.grid[1:], (self.loss.crop_min, self.loss.crop_max)
            )
            inputs["pem_mask"] = inputs["pem_mask"].to(device)
            crops = crop_video(video, boxes, self.cfg.patch)
            # The losses read the pseudo-labels from the batch the loop hands them next.
            batch["pem_labels"], batch["pem_keep"] = self.prompter(device).pseudo_labels(crops)
        return inputs

    def losses(self, outputs, batch, device, *, rank: int, world_size: int) -> dict:
        parts = {
            "vtc": vtc_loss(
                outputs["video_vt"], outputs["text_vt"], outputs["temp"], rank, world_size
            )
        }
        total = self.loss.vtc_weight * parts["vtc"]
        if not self.cfg.is_prompter:
            zero = outputs["vtm_logits"].sum() * 0.0 + 0.0  # +0.0: no "-0.0" in the log
            parts["vtm"] = vtm_loss(outputs["vtm_logits"], self.loss.vtm_pos_weight)
            parts["mlm"] = (
                mlm_loss(outputs["mlm_logits"], batch["mlm_labels"].to(device))
                if "mlm_logits" in outputs
                else zero
            )
            parts["pem"] = (
                pem_loss(outputs["pem_logits"], batch["pem_labels"], batch["pem_keep"])
                if "pem_logits" in outputs
                else zero
            )
            total = (
                total
                + self.loss.vtm_weight * parts["vtm"]
                + self.loss.mlm_weight * parts["mlm"]
                + self.loss.pem_weight * parts["pem"]
            )
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    def flops_per_clip(self) -> float:
        """Training FLOPs of one clip: 6 x (parameters x tokens) per encoder pass (matmul
        FLOPs; attention scores ignored), with the fusion run 4 times (positive, 2 negatives,
        MLM) and the text encoder twice (caption, masked caption)."""
        c = self.cfg
        T, h, w = c.grid
        d, L = c.text.d_model, self.max_words

        def block_params(layers: int, width: int, ff: int) -> float:
            return layers * (4 * width * width + 2 * width * ff)

        video = block_params(c.video.num_layers, c.video.d_model, c.video.d_ff) * (1 + T * h * w)
        video += c.video.num_layers * c.video.d_model**2 * T * h * w  # temporal_fc
        text = block_params(c.text.num_layers, d, c.text.d_ff) * L
        fusion = block_params(c.fusion_layers, d, c.text.d_ff) * (L + 1 + h * w)
        passes = 1 if c.is_prompter else 4
        forward = 2 * (video + text * (1 if c.is_prompter else 2) + fusion * passes)
        return float(3 * forward)


__all__ = [
    "AlproLossConfig",
    "AlproObjective",
    "Prompter",
    "STOPWORDS",
    "TEMPLATES",
    "content_words",
    "crop_cell_sizes",
    "crop_video",
    "content_word_mask",
    "entity_vocabulary",
    "mask_tokens",
    "mlm_loss",
    "pem_loss",
    "prompt_ids",
    "random_crops",
    "read_entities",
    "vtc_loss",
    "vocabulary_pieces",
    "vtm_loss",
]
