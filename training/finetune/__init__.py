"""Fine-tuning: a pretrained tower + a new classification head, trained with Ray Train (DDP)."""
