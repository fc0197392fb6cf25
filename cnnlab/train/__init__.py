"""The PyTorch training engine: Trainer, configuration and recipes, run folders."""
