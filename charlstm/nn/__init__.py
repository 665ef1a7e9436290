"""The network: recurrent cells, stacked and fused layers, the model, sampling and export to PyTorch."""
