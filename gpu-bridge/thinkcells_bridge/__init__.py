"""thinkcells GPU bridge: a persistent PyTorch worker that holds model state for notebooks."""

__version__ = "0.1.0"
