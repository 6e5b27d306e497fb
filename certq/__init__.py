"""certq: certifies AI model deployments in the background."""

__version__ = "0.1.0"
