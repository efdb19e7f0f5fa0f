"""Pretraining objectives: the seam (`base.Objective`), shared contrastive losses, families."""
