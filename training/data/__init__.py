"""The data path of training: shards -> decoded, augmented clips -> batches (loader, augment)."""
