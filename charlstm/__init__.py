"""charlstm: character-level LSTM / GRU / RNN language models on JAX."""

__version__ = "0.1.0"
