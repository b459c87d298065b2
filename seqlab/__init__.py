"""seqlab: a config-driven experiment runner for recurrent sequence models."""

__version__ = "0.1.0"
