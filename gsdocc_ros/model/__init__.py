"""The GSD-OCC network in plain PyTorch; attribute names follow the official checkpoint."""
