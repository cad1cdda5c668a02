"""PyTorch engine: data, networks, training, checkpoints, loading external models."""
