"""Hybrid-batch fine-tuning of multilingual encoders (arXiv 2408.10536, section 2.2).

``train(config) -> Path`` runs a :class:`TrainConfig` (``load_config("training/xlmr-hybrid.toml")``).
The heavy modules (torch, sentence-transformers) load on first use, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybrid_qdrant.training.config import TrainConfig, load_config
    from hybrid_qdrant.training.trainer import train

_LAZY = {"TrainConfig": "config", "load_config": "config", "train": "trainer"}

__all__ = ["TrainConfig", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"hybrid_qdrant.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
