"""Stage 3: Ray Tune sweeps over training hyperparameters."""
