"""Zero-shot classification from class names: prompts through the text tower against video
(UCF101, HMDB51, Kinetics) or audio (ESC-50) views, no training at all.

    class names -> words ("ApplyEyeMakeup" -> "apply eye makeup", "car_repair" -> "car repair")
    -> each filled into every prompt template ("a video of a person {}.") -> z_t,vt of every
       prompt, l2-normalised, averaged over the templates and l2-normalised again (CLIP's
       prompt ensembling): one vector per class
    -> every item's views (windows x crops) embedded with Ray Data
    -> cosine logits per view, averaged over the item's views (multi-view testing)
    -> top-1 / top-5, per-class accuracy, confusion matrix, chance

Which space. Text lives only in the video-text space (z_t,vt). Video reaches it directly
(z_v,vt). Audio has no head into it: VATT trains audio against video in the video-audio
space (NCE on z_a,va and z_v,va) and defines the video-text space *from* that space,
z_v,vt = g_v->vt(z_v,va) (spec section 2). So ESC-50 audio goes through the same map,
z_a,vt := g_v->vt(z_a,va): where audio and video agree in the video-audio space, the map
sends them to the same point in the video-text space, where the class prompts are. Comparing
in the video-audio space is impossible (text has no embedding there), and the audio tower's
own features have no text counterpart at all.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.eval import benchmarks
from training.eval.extract import Embeddings, MediaItem, WindowSpec, extract_embeddings
from training.eval.metrics import topk_correct

DATASETS = {"ucf101": "video", "hmdb51": "video", "kinetics": "video", "esc50": "audio"}

# Prompt template sets (`--templates NAME`, or a file of one template per line). "{}" is the
# class name in words. video/audio follow CLIP's prompt ensembles for Kinetics-700 / UCF101
# (Radford et al. 2021, the repository's prompt-engineering notes); "asr" is in the words of
# instructional speech (HowTo100M captions are ASR lines), the register a model pretrained on
# them has read, and every word of it is in the sample corpus's vocabulary.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "video": (
        "a video of {}.",
        "a video of a person {}.",
        "a video of a person doing {}.",
        "a video of a person performing {}.",
        "a video of a person practicing {}.",
        "a photo of a person doing {}.",
        "an example of a person {}.",
        "a demonstration of {}.",
    ),
    "audio": (
        "the sound of {}.",
        "a sound of {}.",
        "a recording of {}.",
        "a sound clip of {}.",
        "this is the sound of {}.",
    ),
    "asr": (
        "{}",
        "now we {}",
        "then you {}",
        "here is some {}",
        "so this is {}",
        "next a little {}",
        "just take the {}",
    ),
    "name": ("{}",),
}
DEFAULT_TEMPLATES = {"video": "video", "audio": "audio"}
# The embedding each modality is scored with, in the video-text space (module docstring).
SPACE = {
    "video": "video-text: z_v,vt",
    "audio": "video-text through the video-audio space: g_v->vt(z_a,va)",
}


def class_words(name: str) -> str:
    """A class name as words for a prompt: CamelCase split (UCF101 "ApplyEyeMakeup"), '_' and
    '-' to spaces (HMDB51 "brush_hair", ESC-50 "chirping_birds"), lower case."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(spaced.replace("_", " ").replace("-", " ").split()).lower()


def load_templates(spec: str) -> tuple[str, ...]:
    """A built-in set by name, or a UTF-8 file with one template per line ('#' comments).

    Every template must hold "{}" exactly once; ValueError names the set or the line."""
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"templates {spec!r}: not a file nor one of {', '.join(TEMPLATE_SETS)}")
    templates = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.count("{}") != 1 or re.search(r"\{[^}]", text):
            raise ValueError(f"{path}:{n}: a template needs exactly one '{{}}': {text!r}")
        templates.append(text)
    if not templates:
        raise ValueError(f"{path}: no templates (one per line, each with '{{}}')")
    return tuple(templates)


# ---------------------------------------------------------------------------------------------
# The labelled items
# ---------------------------------------------------------------------------------------------


@dataclass
class ZeroShotSet:
    """The classes and the items to classify (a split's test list, a Kinetics CSV, ESC-50)."""

    dataset: str
    modality: str
    classes: list[str]
    items: list  # training.eval.benchmarks.LabelledItem
    errors: list[str] = field(default_factory=list)


def load_zeroshot_set(
    dataset: str,
    *,
    splits_dir: str | Path | None = None,
    videos_dir: str | Path | None = None,
    split: int = 1,
    kinetics_csv: str | Path | None = None,
    kinetics_classes_csv: str | Path | None = None,
    esc50_csv: str | Path | None = None,
    audio_dir: str | Path | None = None,
    folds: tuple[int, ...] = (1, 2, 3, 4, 5),
) -> ZeroShotSet:
    """UCF101/HMDB51: the test list of `split`; Kinetics: the rows of `kinetics_csv` (classes
    from `kinetics_classes_csv`, e.g. train.csv, when given); ESC-50: every clip of `folds`.
    Raises ValueError (naming the file) when a list is unreadable; bad rows are errors."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: choose one of {sorted(DATASETS)}")
    if dataset in ("ucf101", "hmdb51"):
        cs = benchmarks.read_ucf_split(splits_dir, videos_dir, split)
        return ZeroShotSet(dataset, "video", cs.classes, cs.test, list(cs.errors))
    if dataset == "kinetics":
        cs = benchmarks.read_kinetics(kinetics_classes_csv, kinetics_csv, videos_dir)
        return ZeroShotSet(dataset, "video", cs.classes, cs.test, list(cs.errors))
    classes, items, errors = benchmarks.read_esc50(esc50_csv, audio_dir)
    chosen = [item for item, fold in items if fold in folds]
    if not chosen:
        present = ", ".join(map(str, sorted({f for _, f in items})))
        raise ValueError(f"{esc50_csv}: no clips in folds {folds} (folds: {present})")
    return ZeroShotSet(dataset, "audio", classes, chosen, errors)


# ---------------------------------------------------------------------------------------------
# Class vectors and view embeddings
# ---------------------------------------------------------------------------------------------


def class_embeddings(
    model, tokenizer, texts: list[str], templates: tuple[str, ...], max_words: int = 16
) -> torch.Tensor:
    """One l2-normalised z_t,vt per class: the mean of its prompts' normalised embeddings,
    normalised again. texts: class names as words. Returns (classes, d_vt)."""
    from training.eval.heldout import embed_texts, tokenize_sentences

    prompts = [t.format(text) for text in texts for t in templates]  # class-major
    ids = tokenize_sentences(tokenizer, prompts, max_words, model.cfg.tokenizer.vocab_size)
    emb = embed_texts(model, ids)  # (classes * templates, d), l2-normalised
    emb = emb.reshape(len(texts), len(templates), -1).mean(dim=1)  # (classes, d)
    return F.normalize(emb, dim=-1)


def out_of_vocabulary(tokenizer, texts: list[str]) -> dict[str, list[str]]:
    """{class text: its words the tokenizer does not know}; such words become [UNK], which
    carries nothing of the class (reported so a user can rename the class)."""
    from preprocessing.vocab import UNK

    unk = tokenizer.token_to_id(UNK)
    out = {}
    for text in texts:
        enc = tokenizer.encode(text)
        unknown = [text[a:b] for (a, b), i in zip(enc.offsets, enc.ids) if i == unk]
        if unknown:
            out[text] = unknown
    return out


def audio_to_video_text(model, audio_va: np.ndarray) -> np.ndarray:
    """z_a,va (..., d_va) -> g_v->vt(z_a,va) (..., d_vt): the video's va->vt projection
    applied to audio (module docstring). ValueError when the model has no such map."""
    to_vt = getattr(getattr(model, "video_head", None), "to_vt", None)
    if to_vt is None:
        raise ValueError(
            f"{type(model).__name__} has no video-audio -> video-text projection "
            "(video_head.to_vt): audio zero-shot needs VATT's hierarchical common space"
        )
    lead, d = audio_va.shape[:-1], audio_va.shape[-1]
    with torch.no_grad():
        vt = to_vt(torch.from_numpy(audio_va.reshape(-1, d)).float())  # (N, d_vt)
    return vt.numpy().reshape(*lead, -1)


def view_logits(views: np.ndarray, valid: np.ndarray, classes: torch.Tensor) -> torch.Tensor:
    """Cosine logits of every view, averaged over an item's valid views.

    views (N, V, d), valid (N, V), classes (C, d) l2-normalised -> (N, C)."""
    x = F.normalize(torch.from_numpy(views).float(), dim=-1)  # (N, V, d)
    logits = x @ classes.T  # (N, V, C)
    mask = torch.from_numpy(valid).float()[..., None]  # (N, V, 1)
    return (logits * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (N, C)


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def classification_report(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """top1/top5 (ties count against the label), per-class accuracy, mean class accuracy,
    the confusion matrix (rows: true class, columns: argmax) and chance, for (N, C) logits."""
    n, c = logits.shape
    correct = topk_correct(logits, labels, (1, 5))
    # A row whose label ties with another class is wrong (as topk_correct counts it).
    own = logits.gather(1, labels[:, None])  # (N, 1)
    right = (logits >= own).sum(dim=1) == 1  # (N,)
    predicted = logits.nan_to_num(nan=float("-inf")).argmax(dim=1)  # (N,)
    confusion = torch.zeros(c, c, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones(n, dtype=torch.long), accumulate=True)
    per_class = {}
    for k, name in enumerate(classes):
        rows = labels == k
        if rows.any():
            per_class[name] = {"accuracy": float(right[rows].float().mean()), "n": int(rows.sum())}
    return {
        "top1": correct[1] / n,
        "top5": correct[5] / n,
        "chance_top1": 1.0 / c,
        "chance_top5": min(5, c) / c,
        "mean_class_accuracy": float(np.mean([v["accuracy"] for v in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def score(
    model,
    data: ZeroShotSet,
    tokenizer,
    *,
    templates: tuple[str, ...],
    class_texts: dict[str, str] | None = None,
    num_windows: int = 4,
    crops: int = 1,
    clip_seconds: float = 3.2,
    size: int | None = None,
    max_words: int = 16,
    batch_size: int = 16,
    label: str = "model",
) -> dict:
    """Zero-shot scores of `model` on `data` (see the module docstring for the steps).

    `class_texts` maps a class name to the words used in its prompts (default
    `class_words(name)`). Returns {label, space, top1, top5, chance_top1, chance_top5,
    mean_class_accuracy, per_class, confusion, classes, class_texts, templates,
    out_of_vocabulary, views, num_items, num_scored, num_errors, errors, seconds}."""
    began = time.perf_counter()
    texts = [(class_texts or {}).get(c) or class_words(c) for c in data.classes]
    spec = WindowSpec.for_model(model.cfg, data.modality, num_windows, clip_seconds, size, crops)
    output = "video_vt" if data.modality == "video" else "audio_va"
    items = [MediaItem(it.key, str(it.path)) for it in data.items]
    emb: Embeddings = extract_embeddings(
        model, items, spec, (output,), batch_size=batch_size, desc=f"{label}: {data.dataset}"
    )
    views = emb.outputs[output]  # (N, V, d)
    if data.modality == "audio":
        views = audio_to_video_text(model, views)  # (N, V, d_vt)
    errors = list(data.errors) + [f"{k}: {emb.errors[k]}" for k in emb.keys if k in emb.errors]
    scored = np.flatnonzero(emb.valid.any(axis=1))
    if len(scored) == 0:
        raise ValueError(f"{data.dataset}: nothing to score ({'; '.join(errors[:3])})")
    class_emb = class_embeddings(model, tokenizer, texts, templates, max_words)  # (C, d)
    logits = view_logits(views[scored], emb.valid[scored], class_emb)  # (N', C)
    labels = torch.tensor([data.items[i].label for i in scored])
    report = {"label": label, "space": SPACE[data.modality]}
    report |= classification_report(logits, labels, data.classes)
    return report | {
        "classes": list(data.classes),
        "class_texts": texts,
        "templates": list(templates),
        "out_of_vocabulary": out_of_vocabulary(tokenizer, texts),
        "views": {"clips": spec.num_windows, "crops": spec.crops},
        "num_items": len(items),
        "num_scored": int(len(scored)),
        "num_errors": len(errors),
        "errors": errors,
        "seconds": time.perf_counter() - began,
    }


__all__ = [
    "DATASETS",
    "DEFAULT_TEMPLATES",
    "SPACE",
    "TEMPLATE_SETS",
    "ZeroShotSet",
    "audio_to_video_text",
    "class_embeddings",
    "class_words",
    "classification_report",
    "load_templates",
    "load_zeroshot_set",
    "out_of_vocabulary",
    "score",
    "view_logits",
]
