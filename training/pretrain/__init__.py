"""Pretraining: the run config, optimizer and DeepSpeed settings, the run folder, the loop."""
