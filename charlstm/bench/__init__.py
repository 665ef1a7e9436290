"""`charlstm bench`: the benchmark suite and its probes."""
