"""Looking at models and runs: cell comparisons, gradient flow, inspection and heatmaps, plots, run listings."""
