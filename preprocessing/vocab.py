"""Word-level caption vocabulary with HF `tokenizers`: built beside the shards, used by the loader.

Words are NFKC-normalised, lower-cased, accent-stripped and split on whitespace and
punctuation. Id 0 is padding, id 1 is unknown; the rest are the most frequent words.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

PAD, UNK = "[PAD]", "[UNK]"
TOKENIZER_FILE = "tokenizer.json"


def build_tokenizer(texts: Iterable[str], vocab_size: int = 65536) -> Tokenizer:
    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = WordLevelTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], min_frequency=1)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, folder: str | Path) -> str:
    """Write tokenizer.json into `folder` (a path or an object-store URI)."""
    from preprocessing import storage

    path = storage.join(str(folder), TOKENIZER_FILE)
    storage.write_text(path, tok.to_str(pretty=True))
    return path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load tokenizer.json (or the folder that holds it); `path` may be an object-store URI."""
    from preprocessing import storage

    if storage.is_uri(str(path)):
        return Tokenizer.from_str(storage.read_bytes(str(path)).decode("utf-8"))
    p = Path(path)
    return Tokenizer.from_file(str(p / TOKENIZER_FILE if p.is_dir() else p))


def encode_captions(
    tok: Tokenizer, texts: list[str], num_captions: int = 5, max_words: int = 16
) -> np.ndarray:
    """Captions -> int64 ids [K, L] (K = num_captions, L = max_words), zero-padded/truncated.
    Missing captions are all-zero rows (the model treats id 0 as padding)."""
    ids = np.zeros((num_captions, max_words), dtype=np.int64)
    for k, enc in enumerate(tok.encode_batch(list(texts[:num_captions]))):
        row = enc.ids[:max_words]
        ids[k, : len(row)] = row
    return ids
