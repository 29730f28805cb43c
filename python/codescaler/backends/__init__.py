"""Backends run the reward model's forward pass on token ids; they know nothing of extraction or shaping."""

from .base import Backend, Unit

__all__ = ["Backend", "Unit"]
