"""Stage 1: raw videos + captions / sound clips -> WebDataset triplet shards (never imports training)."""
