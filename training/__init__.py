"""Stage 2: the VATT model family, its contrastive objective, and (later) the loader and trainer."""
