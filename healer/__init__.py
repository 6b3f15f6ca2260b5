"""healer: detects and heals stalled AI coding agents that work through files."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
