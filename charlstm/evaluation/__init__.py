"""Measuring a model: held-out loss, long-range accuracy and the prompt checks run during training."""
