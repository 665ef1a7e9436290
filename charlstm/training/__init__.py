"""Training: the step and loop (`loop`), the runner behind `charlstm train`, checkpoints, run directories,
multi-process layout, fine-tuning and TensorBoard event files."""
