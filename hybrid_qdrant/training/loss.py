"""The training loss: InfoNCE with in-batch negatives, plain or cached (GradCache).

Both variants are sentence-transformers' own (MultipleNegativesRankingLoss and
CachedMultipleNegativesRankingLoss): cosine similarity times ``1 / temperature``, each query against
every passage (and hard negative) of the batch, optionally the symmetric passage-to-query term, and
optionally negatives gathered from every device.
"""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from hybrid_qdrant.training.config import LossSection

QUERY_TO_PASSAGE = ("query_to_doc",)
SYMMETRIC = ("query_to_doc", "doc_to_query")


def build_loss(model: SentenceTransformer, config: LossSection, distributed: bool = False) -> torch.nn.Module:
    """The configured InfoNCE loss over (query, passage[, negative]) columns.

    Args:
        model: the model being trained.
        config: the ``[loss]`` section.
        distributed: several processes train together; gathering across devices applies only then.
    """
    common = {
        "scale": 1.0 / config.temperature,
        "gather_across_devices": config.gather_across_devices and distributed,
        "directions": SYMMETRIC if config.symmetric else QUERY_TO_PASSAGE,
        # symmetric InfoNCE: one softmax per direction, averaged
        "partition_mode": "per_direction" if config.symmetric else "joint",
    }
    if config.cached:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size, **common)
    return MultipleNegativesRankingLoss(model, **common)
