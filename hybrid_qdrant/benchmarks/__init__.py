"""Benchmark loaders: LAReQA (XQuAD-R, MLQA-R)."""
