"""The subword caption tokenizer of the ALPRO family: WordPiece, trained on the corpus captions
with HF `tokenizers`, saved as one tokenizer.json the shard loader reads like any other.

A word-level vocabulary maps every unseen word of a real video-text caption to [UNK]; WordPiece
splits it into known pieces instead (BERT's scheme: lower-cased, accents stripped, "##"
continuation pieces). Fixed ids: 0 [PAD] (the loader pads with 0), 1 [UNK], 2 [CLS], 3 [SEP],
4 [MASK]; every encoding is "[CLS] pieces [SEP]", truncated to `max_len` ids with [SEP] kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from preprocessing import shard_format
from preprocessing.vocab import load_tokenizer

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))


def build_wordpiece(texts: Iterable[str], vocab_size: int, max_len: int) -> Tokenizer:
    """A WordPiece tokenizer trained on `texts` with at most `vocab_size` entries.

    Args:
        texts: caption strings.
        vocab_size: the model's vocabulary (embedding rows); the trained vocabulary may be
            smaller on a small corpus.
        max_len: ids per encoding, [CLS] and [SEP] included (the loader's data.max_words).
    """
    if vocab_size <= len(SPECIAL_TOKENS) or max_len < 3:
        raise ValueError(f"vocab_size={vocab_size} must exceed 5 and max_len={max_len} >= 3")
    tok = Tokenizer(WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=1
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, CLS_ID), (SEP, SEP_ID)]
    )
    tok.enable_truncation(max_length=max_len)
    return tok


def check_wordpiece(tok: Tokenizer, where: str) -> None:
    """ValueError naming `where` unless `tok` has the fixed special ids of this module."""
    for token, expected in zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS))):
        if tok.token_to_id(token) != expected:
            raise ValueError(
                f"{where}: not an ALPRO WordPiece tokenizer ({token} has id "
                f"{tok.token_to_id(token)}, expected {expected}); leave data.tokenizer empty "
                "to build one from the captions"
            )


def load_wordpiece(path: str) -> Tokenizer:
    """tokenizer.json (a path or an object-store URI), checked to be one of this module's."""
    tok = load_tokenizer(path)
    check_wordpiece(tok, str(path))
    return tok


def shard_captions(shards: list[str]) -> Iterator[str]:
    """Every caption text of every sample in `shards` (their meta.json), in order."""
    problems: list[str] = []

    def note(key: str, reason: str) -> None:
        problems.append(f"{key}: {reason}")

    samples = shard_format.read_shards(({"url": s} for s in shards), on_problem=note)
    for raw in samples:
        if shard_format.META_MEMBER not in raw:
            continue
        meta = shard_format.parse_meta(raw[shard_format.META_MEMBER])
        if not meta.get("text_mask", 1):
            continue
        for caption in meta.get("captions", []):
            text = str(caption.get("text", "")).strip() if isinstance(caption, dict) else ""
            if text:
                yield text


__all__ = [
    "CLS_ID",
    "MASK_ID",
    "PAD_ID",
    "SEP_ID",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "build_wordpiece",
    "check_wordpiece",
    "load_wordpiece",
    "shard_captions",
]
