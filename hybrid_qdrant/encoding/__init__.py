"""Encoders: the protocol every model meets, the sentence-transformers implementation, the embedding cache.

- ``encoder``: ``Encoder`` (the protocol), ``EncoderSettings`` (the ``[encoder]`` section of a job),
  ``SentenceTransformerEncoder``, ``load_sentence_transformer``;
- ``cache``: ``EmbeddingCache`` and ``CachedEncoder`` (every text encoded once per model);
- ``source``: ``EncoderSource``, what a collection records to load its encoder again, and
  ``load_encoder`` (the recorded encoder, checked against the collection's fingerprint).
"""
