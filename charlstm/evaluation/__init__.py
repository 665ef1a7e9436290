"""Measuring a model: held-out loss, long-range accuracy and the prompt checks run during training."""

# The shortest span `sample --novelty` counts as copied, in characters (`novelty.MIN_COPY`; here, so that the command
# line reads it without importing NumPy). Measured on unseen text, the validation split against the training
# split: on tinyshakespeare no character of it lies in a span this long (its longest match is 31 characters),
# where 24 would mark 0.31% and 20 1.54%. docs/novelty.md has the numbers, and the templated bundled corpus.
MIN_COPY = 32
