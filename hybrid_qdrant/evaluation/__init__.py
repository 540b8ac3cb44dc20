"""Evaluation: write a benchmark into a collection, rank each setting's queries through it, score, report.

- ``slices``: the settings (mono / cross / multi), their slices and slice keys;
- ``metrics``: pure metric functions over the ranks of relevant items;
- ``evaluate``: ``EvalOptions`` and ``evaluate`` (ranks from the store, exact beyond its depth);
- ``ingest``: streaming, resumable, content-checked ingestion;
- ``report``: JSON, Markdown, heatmap and per-query files;
- ``runfiles``: TREC run and qrels files of an evaluation, one pair per slice;
- ``significance`` / ``compare``: cluster- and seed-aware tests between reports;
- ``jobs``: the ingest and evaluate jobs, assembled in one place from one typed config.
"""
