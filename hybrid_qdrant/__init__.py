"""hybrid-qdrant: hybrid-batch training and mono/cross/multilingual retrieval evaluation on Qdrant."""

__version__ = "0.1.0"
