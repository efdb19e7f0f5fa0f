"""What ALPRO learned, measured on held-out clips whose topics are known (the WebVid-style sample
set: single-topic clips and two-topic side-by-side clips): one number per claim of the paper.

  vtc.t2v_r1             caption -> clip retrieval R@1 in the VTC space (+ chance = 1 / clips)
  vtm.balanced_accuracy  P(match) > 0.5 for a caption with its own clip vs with the clips of
                         other topics, (TPR + TNR) / 2
  mlm.topic_accuracy_*   every piece of the caption's topic words masked; predicted with the
                         clip itself (matched) and with an other-topic clip (swapped): the gap
                         proves the fusion encoder reads the video
  pem.prompter_topic_accuracy  the prompter's top entity on a whole single-topic clip is a word
                         of its topic
  pem.head_agreement     the PEM head's top entity on a crop == the prompter's on that crop
  pem.region_accuracy    crops inside one half of a two-topic clip: the PEM head's top entity
                         is a word of that half's topic

Inputs are plain tensors and strings (`TopicClip`); reading shards and the sample set's ground
truth is the caller's job. Every function takes the model and runs it in eval mode, no grad.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.data.wordpiece import MASK_ID
from training.objectives.alpro import Prompter, crop_video


@dataclass(frozen=True)
class TopicClip:
    """One held-out clip: video (T, H, W, 3) in [-1, 1], its caption, the topics of its left
    and right halves (equal for a single-topic clip) and, per topic, the words of that topic
    the caption uses."""

    video: torch.Tensor
    caption: str
    left: str
    right: str
    caption_words: dict[str, list[str]]

    @property
    def topics(self) -> set[str]:
        return {self.left, self.right}

    @property
    def is_pair(self) -> bool:
        return self.left != self.right


def _encode(tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    ids = torch.zeros(len(texts), max_len, dtype=torch.int64)
    for i, enc in enumerate(tokenizer.encode_batch(texts)):
        row = enc.ids[:max_len]
        ids[i, : len(row)] = torch.tensor(row)
    return ids


def _other_topic(clips: list[TopicClip], i: int, rng: random.Random) -> int:
    """A clip sharing no topic with clip i."""
    others = [j for j, c in enumerate(clips) if not (c.topics & clips[i].topics)]
    if not others:
        raise ValueError("every held-out clip shares a topic with clip {i}: need other topics")
    return rng.choice(others)


@torch.no_grad()
def vtc_retrieval(model, clips: list[TopicClip], text_ids: torch.Tensor) -> dict[str, float]:
    """Caption -> clip R@1 (exact clip) and its chance level."""
    video = torch.stack([c.video for c in clips])
    v = F.normalize(model.encode_video(video)["video_vt"].float(), dim=-1)
    t = F.normalize(model.encode_text(text_ids)["text_vt"].float(), dim=-1)
    top = (t @ v.T).argmax(dim=1)
    r1 = (top == torch.arange(len(clips))).float().mean().item()
    return {"t2v_r1": r1, "chance": 1.0 / len(clips)}


@torch.no_grad()
def vtm_balanced_accuracy(
    model, clips: list[TopicClip], text_ids: torch.Tensor, negatives: int = 3, seed: int = 0
) -> dict[str, float]:
    """Own clip (positive) vs `negatives` other-topic clips per caption."""
    rng = random.Random(seed)
    pos_v, neg_v, neg_t = [], [], []
    for i in range(len(clips)):
        pos_v.append(clips[i].video)
        for _ in range(negatives):
            neg_v.append(clips[_other_topic(clips, i, rng)].video)
            neg_t.append(text_ids[i])
    p_pos = model.match_logits(torch.stack(pos_v), text_ids).softmax(-1)[:, 1]
    p_neg = model.match_logits(torch.stack(neg_v), torch.stack(neg_t)).softmax(-1)[:, 1]
    tpr = (p_pos > 0.5).float().mean().item()
    tnr = (p_neg <= 0.5).float().mean().item()
    # ROC AUC (threshold-free): the chance that a positive outranks a negative.
    auc = (p_pos[:, None] > p_neg[None]).float() + 0.5 * (p_pos[:, None] == p_neg[None]).float()
    return {"balanced_accuracy": (tpr + tnr) / 2, "tpr": tpr, "tnr": tnr,
            "auc": auc.mean().item()}  # fmt: skip


def topic_mask(tokenizer, caption: str, words: list[str], max_len: int) -> tuple[list, list]:
    """(ids, positions of every piece of `words` in the encoded caption)."""
    enc = tokenizer.encode(caption)
    ids = enc.ids[:max_len]
    targets = {w.lower() for w in words}
    positions = [
        p
        for p, token_id in enumerate(ids)
        if token_id >= 5
        and enc.word_ids[p] is not None
        and _word_at(caption, enc, p).lower() in targets
    ]
    return ids, positions


def _word_at(caption: str, enc, position: int) -> str:
    """The whole word the piece at `position` belongs to."""
    word = enc.word_ids[position]
    spans = [enc.offsets[q] for q, w in enumerate(enc.word_ids) if w == word]
    return caption[spans[0][0] : spans[-1][1]]


@torch.no_grad()
def mlm_topic_accuracy(
    model, tokenizer, clips: list[TopicClip], max_len: int, seed: int = 0
) -> dict[str, float]:
    """Accuracy on the masked topic-word pieces with the matched and with a swapped clip."""
    rng = random.Random(seed)
    rows, labels, matched, swapped = [], [], [], []
    for i, clip in enumerate(clips):
        words = [w for topic in clip.topics for w in clip.caption_words.get(topic, [])]
        ids, positions = topic_mask(tokenizer, clip.caption, words, max_len)
        if not positions:
            continue
        row = torch.zeros(max_len, dtype=torch.int64)
        row[: len(ids)] = torch.tensor(ids)
        label = torch.full((max_len,), -100)
        label[positions] = row[positions]
        row[positions] = MASK_ID
        rows.append(row)
        labels.append(label)
        matched.append(clip.video)
        swapped.append(clips[_other_topic(clips, i, rng)].video)
    if not rows:
        raise ValueError("no held-out caption contains a topic word")
    mlm_ids, labels = torch.stack(rows), torch.stack(labels)
    text = model.text_encoder(mlm_ids)
    out = {}
    for name, videos in (("matched", matched), ("swapped", swapped)):
        fused = model.fuse(text, mlm_ids, model.video_encoder(torch.stack(videos)))
        pred = model.mlm_head(fused[:, : mlm_ids.shape[1]]).argmax(dim=-1)
        hit = (pred == labels)[labels != -100]
        out[f"topic_accuracy_{name}"] = hit.float().mean().item()
    out["masked_pieces"] = int((labels != -100).sum())
    return out


def entity_topics(entities: list[str], topic_words: dict[str, list[str]]) -> list[set[str]]:
    """For each entity, the topics whose words include it (empty: a topic-free entity)."""
    words = {t: {w.lower() for w in ws} for t, ws in topic_words.items()}
    return [{t for t, ws in words.items() if e.lower() in ws} for e in entities]


def half_crops(grid: tuple[int, int], area: tuple[float, float]) -> dict[str, list]:
    """Every crop box (top, left, rows, cols) of the patch grid with an area fraction in
    `area` that lies inside the left or the right half."""
    h, w = grid
    half = w // 2
    out: dict[str, list] = {"left": [], "right": []}
    for rows in range(1, h + 1):
        for cols in range(1, half + 1):
            if not area[0] - 1e-9 <= rows * cols / (h * w) <= area[1] + 1e-9:
                continue
            for top in range(h - rows + 1):
                for left in range(half - cols + 1):
                    out["left"].append((top, left, rows, cols))
                    out["right"].append((top, w - half + left, rows, cols))
    return out


def _box_mask(box, grid) -> torch.Tensor:
    top, left, rows, cols = box
    mask = torch.zeros(grid, dtype=torch.bool)
    mask[top : top + rows, left : left + cols] = True
    return mask


@torch.no_grad()
def pem_head_topics(model, clip: TopicClip, text_ids: torch.Tensor, boxes: list) -> torch.Tensor:
    """The PEM head's top entity (K,) for each crop box of one clip, its caption in view."""
    grid = model.cfg.grid[1:]
    v = model.video_encoder(clip.video[None])  # (1, 1+s, D)
    t = model.text_encoder(text_ids[None])
    fused = model.fuse(t, text_ids[None], v)
    patches = fused[:, text_ids.shape[0] + 1 :].expand(len(boxes), -1, -1)  # (K, s, D)
    masks = torch.stack([_box_mask(b, grid) for b in boxes]).flatten(1).float()[..., None]
    pooled = (patches * masks).sum(1) / masks.sum(1)
    return model.pem_head(pooled).argmax(dim=-1)


@torch.no_grad()
def pem_metrics(
    model,
    prompter: Prompter,
    clips: list[TopicClip],
    text_ids: torch.Tensor,
    entities: list[str],
    topic_words: dict[str, list[str]],
    area: tuple[float, float],
    crops_per_clip: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """prompter_topic_accuracy, head_agreement and region_accuracy (module docstring)."""
    rng = random.Random(seed)
    topics_of = entity_topics(entities, topic_words)
    singles = [c for c in clips if not c.is_pair]
    probs = prompter.probabilities(torch.stack([c.video for c in singles]))
    top = probs.argmax(dim=1).tolist()
    prompter_acc = sum(c.left in topics_of[e] for c, e in zip(singles, top)) / len(singles)

    patch = model.cfg.patch
    halves = half_crops(model.cfg.grid[1:], area)
    all_boxes = halves["left"] + halves["right"]
    agree, total, region_hits, region_total = 0, 0, 0, 0
    for i, clip in enumerate(clips):
        boxes = rng.sample(all_boxes, min(crops_per_clip, len(all_boxes)))
        head = pem_head_topics(model, clip, text_ids[i], boxes)
        crops = crop_video(clip.video[None].expand(len(boxes), *clip.video.shape),
                           torch.tensor(boxes), patch)  # fmt: skip
        teacher = prompter.probabilities(crops).argmax(dim=1)
        agree += int((head == teacher).sum())
        total += len(boxes)
        if clip.is_pair:
            for side, topic in (("left", clip.left), ("right", clip.right)):
                pred = pem_head_topics(model, clip, text_ids[i], halves[side])
                region_hits += sum(topic in topics_of[e] for e in pred.tolist())
                region_total += len(halves[side])
    return {
        "prompter_topic_accuracy": prompter_acc,
        "head_agreement": agree / max(total, 1),
        "region_accuracy": region_hits / max(region_total, 1),
    }


def evaluate(
    model,
    prompter: Prompter,
    tokenizer,
    clips: list[TopicClip],
    entities: list[str],
    topic_words: dict[str, list[str]],
    max_len: int,
    area: tuple[float, float] = (0.3, 0.5),
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every metric of the module docstring for one model (eval mode, no grad)."""
    model.eval()
    text_ids = _encode(tokenizer, [c.caption for c in clips], max_len)
    return {
        "vtc": vtc_retrieval(model, clips, text_ids),
        "vtm": vtm_balanced_accuracy(model, clips, text_ids, seed=seed),
        "mlm": mlm_topic_accuracy(model, tokenizer, clips, max_len, seed=seed),
        "pem": pem_metrics(
            model, prompter, clips, text_ids, entities, topic_words, area, seed=seed
        ),  # fmt: skip
    }


__all__ = [
    "TopicClip",
    "entity_topics",
    "evaluate",
    "half_crops",
    "mlm_topic_accuracy",
    "pem_metrics",
    "topic_mask",
    "vtc_retrieval",
    "vtm_balanced_accuracy",
]
