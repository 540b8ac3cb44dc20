"""Dense scores to ranks and top-k: the numpy reference that the Qdrant path is held to.

Every function breaks score ties by doc id ascending, as ``evaluation.metrics.ranks_from_run`` does, so
ranks computed here equal the ranks of the same documents in a full-depth run. Memory is bounded by
processing rows in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybrid_qdrant.evaluation.metrics import Ranks, check_k
from hybrid_qdrant.types import Run

__all__ = [
    "ranks_from_scores",
    "ranks_from_vectors",
    "ranks_to_dict",
    "relevant_indices",
    "top_k_from_scores",
    "top_k_from_vectors",
    "top_k_to_run",
]

# Target number of elements of one (rows, relevant, docs) comparison block in ranks_from_scores:
# small enough to stay in cache (measured fastest at a few MB on 2 cores), large enough to amortise
# the per-chunk Python overhead.
_BLOCK_ELEMENTS = 4_000_000
# Scores computed per matrix product in ranks_from_vectors (16M float32 = 64 MB).
_SCORE_ELEMENTS = 16_000_000


def _float_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (n_queries, n_docs), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
            raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
        scores = scores.astype(np.float64)
    return scores


def _doc_order(doc_ids: Sequence[str] | np.ndarray | None, n_docs: int) -> np.ndarray:
    """Position of each column in ascending doc-id order (the tie-break key); column order if None."""
    if doc_ids is None:
        return np.arange(n_docs, dtype=np.int64)
    ids = np.asarray(doc_ids, dtype=str)
    if ids.shape != (n_docs,):
        raise ValueError(f"doc_ids must have one id per column ({n_docs}), got shape {ids.shape}")
    if n_docs < 2 or bool((ids[1:] > ids[:-1]).all()):  # already in strict id order (unique): no sort
        return np.arange(n_docs, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    if n_docs > 1 and (ids[order[1:]] == ids[order[:-1]]).any():
        raise ValueError("doc_ids must be unique")
    position = np.empty(n_docs, dtype=np.int64)
    position[order] = np.arange(n_docs, dtype=np.int64)
    return position


def relevant_indices(mask: np.ndarray) -> np.ndarray:
    """Column indices of the True entries of a boolean (n_queries, n_docs) mask, row by row.

    Returns:
        int64 array (n_queries, max relevant per row), ascending within a row, padded with -1.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError("mask must be a 2-D boolean array")
    counts = mask.sum(axis=1)  # (n_q,)
    width = int(counts.max()) if counts.size else 0
    rows, cols = np.nonzero(mask)  # row-major: columns ascending within a row
    starts = np.cumsum(counts) - counts
    slots = np.arange(rows.size) - np.repeat(starts, counts)
    out = np.full((mask.shape[0], width), -1, dtype=np.int64)
    out[rows, slots] = cols
    return out


def _pad_ragged(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Ragged per-row index lists as an int64 (n_rows, max length) array padded with -1."""
    lengths = [len(row) for row in rows]
    out = np.full((len(rows), max(lengths, default=0)), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = np.asarray(row, dtype=np.int64)
    return out


def _check_indices(relevant: np.ndarray | Sequence[Sequence[int]], n_queries: int, n_docs: int) -> np.ndarray:
    if not isinstance(relevant, np.ndarray):
        if len(relevant) != n_queries:
            raise ValueError(f"relevant has {len(relevant)} rows for {n_queries} queries")
        relevant = _pad_ragged(relevant)
    if relevant.dtype == np.bool_:
        if relevant.shape != (n_queries, n_docs):
            raise ValueError(f"relevant mask must have shape {(n_queries, n_docs)}, got {relevant.shape}")
        return relevant_indices(relevant)
    if relevant.ndim != 2 or relevant.shape[0] != n_queries or not np.issubdtype(relevant.dtype, np.integer):
        raise ValueError(
            f"relevant must be a boolean mask {(n_queries, n_docs)} or integer indices (n_queries, r)"
        )
    relevant = relevant.astype(np.int64, copy=False)
    if relevant.size and (relevant.min() < -1 or relevant.max() >= n_docs):
        raise ValueError(f"relevant indices must lie in [0, {n_docs}) or be -1 (padding)")
    if relevant.shape[1] > 1:
        ordered = np.sort(relevant, axis=1)
        if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
            raise ValueError("a relevant index repeats within a row")
    return relevant


def _count_true(block: np.ndarray) -> np.ndarray:
    """Count True along the last axis of a C-contiguous bool array whose last axis is a multiple of 8."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0: popcount of 8 bools at a time (True is 0x01)
        words = block.view(np.uint64)
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    return np.count_nonzero(block, axis=-1).astype(np.int64)  # pragma: no cover


def _rank_chunk_size(chunk_size: int | None, n_rel: int, width: int) -> int:
    if chunk_size is None:
        return max(1, _BLOCK_ELEMENTS // (max(n_rel, 1) * width))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _rank_block(block: np.ndarray, idx: np.ndarray, doc_order: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """Ranks for one chunk of rows: block (c, n_docs) scores, idx (c, r) indices padded with -1."""
    if np.isnan(block).any():
        raise ValueError("scores must not be NaN")
    n_docs = block.shape[1]
    rows = buffer[: block.shape[0]]  # (c, width); the NaN padding compares False with everything
    rows[:, :n_docs] = block
    valid = idx >= 0
    own = np.take_along_axis(block, np.where(valid, idx, 0), axis=1)  # (c, r)
    own = np.where(valid, own, np.nan)  # padding counts 0 everywhere
    greater = _count_true(rows[:, None, :] > own[:, :, None])  # (c, r)
    at_least = _count_true(rows[:, None, :] >= own[:, :, None])  # (c, r), includes itself
    ranks = greater + 1
    tied_i, tied_j = np.nonzero(at_least - greater > 1)
    if tied_i.size:  # exact ties: add the tied docs whose id sorts first
        equal = block[tied_i] == own[tied_i, tied_j][:, None]  # (m, n_docs)
        earlier = doc_order[None, :] < doc_order[idx[tied_i, tied_j]][:, None]  # (m, n_docs)
        ranks[tied_i, tied_j] += np.count_nonzero(equal & earlier, axis=1)
    return np.where(valid, ranks, 0)


def ranks_from_scores(
    scores: np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    doc_ids: Sequence[str] | np.ndarray | None = None,
    *,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Exact 1-based ranks of relevant items in each row of a dense score matrix, without sorting rows.

    rank = #(score > s) + #(score == s and doc_id < own doc_id) + 1, the same ranking as
    ``ranks_from_run`` on the full-depth run. Rows are processed in chunks to bound memory. Measured on
    2 cores: 0.6-0.7 s for 13090 x 13000 float32 scores with 11 relevant per row (float64: ~3 s).

    Args:
        scores: (n_queries, n_docs) real scores, no NaN.
        relevant: boolean mask (n_queries, n_docs); or integer column indices (n_queries, r) padded
            with -1; or one sequence of column indices per row (ragged). A mask is read as
            ``relevant_indices(mask)``.
        doc_ids: the id of each column, for the tie-break; None breaks ties by column index.
        chunk_size: rows per chunk; None keeps a (rows, r, n_docs) comparison block near 4M elements.

    Returns:
        int64 array (n_queries, r): ranks aligned with the (padded) relevant indices, 0 at padding.
    """
    scores = _float_scores(scores)
    n_queries, n_docs = scores.shape
    indices = _check_indices(relevant, n_queries, n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    out = np.zeros(indices.shape, dtype=np.int64)
    if n_queries == 0 or indices.shape[1] == 0:
        return out
    width = n_docs + (-n_docs) % 8  # pad columns so a row of bools views as uint64 words
    chunk_size = _rank_chunk_size(chunk_size, indices.shape[1], width)
    buffer = np.full((min(chunk_size, n_queries), width), np.nan, dtype=scores.dtype)
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        out[start:stop] = _rank_block(scores[start:stop], indices[start:stop], doc_order, buffer)
    return out


def ranks_from_vectors(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    doc_ids: Sequence[str] | np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    query_ids: Sequence[str],
    *,
    chunk_size: int | None = None,
) -> Ranks:
    """Exact ranks by dot product, scoring a chunk of queries at a time (no full score matrix).

    Args:
        query_vectors: (n_queries, dim); doc_vectors: (n_docs, dim). Normalised vectors make the dot
            product the cosine similarity.
        doc_ids: the id of each doc vector (tie-break and output keys).
        relevant: per query, the relevant rows of ``doc_vectors`` (as in ``ranks_from_scores``).
        query_ids: the id of each query vector.
        chunk_size: queries per chunk; None as in ``ranks_from_scores``.

    Returns:
        ``{qid: {doc_id: rank}}`` with every relevant item ranked among all docs.
    """
    queries, docs = np.asarray(query_vectors), np.asarray(doc_vectors)
    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(f"vectors must be (n, dim) with one dim, got {queries.shape} and {docs.shape}")
    if len(query_ids) != queries.shape[0]:
        raise ValueError(f"{len(query_ids)} query ids for {queries.shape[0]} query vectors")
    n_queries, n_docs = queries.shape[0], docs.shape[0]
    indices = _check_indices(relevant, n_queries, n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    ranks = np.zeros(indices.shape, dtype=np.int64)
    if n_queries and indices.shape[1]:
        dtype = np.result_type(queries.dtype, docs.dtype, np.float32)
        width = n_docs + (-n_docs) % 8
        chunk_size = _rank_chunk_size(chunk_size, indices.shape[1], width)
        buffer = np.full((min(chunk_size, n_queries), width), np.nan, dtype=dtype)
        docs_t = docs.astype(dtype, copy=False).T  # (dim, n_docs)
        # score many queries per matrix product (small products are slow), rank them chunk by chunk
        score_rows = max(chunk_size, _SCORE_ELEMENTS // max(n_docs, 1))
        for outer in range(0, n_queries, score_rows):
            block = queries[outer : outer + score_rows].astype(dtype, copy=False) @ docs_t  # (s, n_docs)
            for inner in range(0, block.shape[0], chunk_size):
                start, stop = outer + inner, outer + min(inner + chunk_size, block.shape[0])
                ranks[start:stop] = _rank_block(
                    block[inner : inner + chunk_size], indices[start:stop], doc_order, buffer
                )
    return ranks_to_dict(ranks, indices, query_ids, doc_ids)


def top_k_from_scores(
    scores: np.ndarray,
    k: int,
    doc_ids: Sequence[str] | np.ndarray | None = None,
    *,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row, ordered by score descending then doc id ascending.

    Uses a partial partition per row; rows with a tie across the k-th place pick the tied docs with the
    smallest ids, so the result equals the head of the full ranking.

    Args:
        scores: (n_queries, n_docs) real scores, no NaN.
        k: how many per row; more than n_docs returns all n_docs.
        doc_ids: the id of each column, for the tie-break; None breaks ties by column index.
        chunk_size: rows per chunk.

    Returns:
        (indices, values): int64 column indices and their scores, both (n_queries, min(k, n_docs)).
    """
    scores = _float_scores(scores)
    check_k(k, required=True)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n_queries, n_docs = scores.shape
    k = min(int(k), n_docs)
    doc_order = _doc_order(doc_ids, n_docs)
    indices = np.empty((n_queries, k), dtype=np.int64)
    values = np.empty((n_queries, k), dtype=scores.dtype)
    if k == 0:
        return indices, values
    for start in range(0, n_queries, chunk_size):
        stop = min(start + chunk_size, n_queries)
        block = scores[start:stop]  # (c, n_docs)
        if np.isnan(block).any():
            raise ValueError("scores must not be NaN")
        if k < n_docs:
            picked = np.argpartition(block, n_docs - k, axis=1)[:, n_docs - k :]  # (c, k), unordered
        else:
            picked = np.broadcast_to(np.arange(n_docs), block.shape).copy()
        kth = np.take_along_axis(block, picked, axis=1).min(axis=1)  # (c,)
        ambiguous = np.nonzero(np.count_nonzero(block >= kth[:, None], axis=1) > k)[0]
        for row in ambiguous:  # a tie straddles the k-th place: take the tied docs with smallest ids
            above = np.flatnonzero(block[row] > kth[row])
            tied = np.flatnonzero(block[row] == kth[row])
            tied = tied[np.argsort(doc_order[tied], kind="stable")[: k - above.size]]
            picked[row] = np.concatenate([above, tied])
        picked_scores = np.take_along_axis(block, picked, axis=1)  # (c, k)
        order = np.lexsort((doc_order[picked], -picked_scores), axis=1)  # (c, k)
        indices[start:stop] = np.take_along_axis(picked, order, axis=1)
        values[start:stop] = np.take_along_axis(picked_scores, order, axis=1)
    return indices, values


def top_k_from_vectors(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    k: int,
    doc_ids: Sequence[str] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_from_scores`` of the dot products, scoring as ``ranks_from_vectors`` does (the same dtype,
    many queries per matrix product, no full score matrix), so that both see the same scores.

    Returns:
        (indices, values): both (n_queries, min(k, n_docs)), best first, ties by doc id.
    """
    queries, docs = np.asarray(query_vectors), np.asarray(doc_vectors)
    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(f"vectors must be (n, dim) with one dim, got {queries.shape} and {docs.shape}")
    check_k(k, required=True)
    n_queries, n_docs = queries.shape[0], docs.shape[0]
    dtype = np.result_type(queries.dtype, docs.dtype, np.float32)
    width = min(int(k), n_docs)
    indices = np.empty((n_queries, width), dtype=np.int64)
    values = np.empty((n_queries, width), dtype=dtype)
    if not n_queries or not width:
        return indices, values
    docs_t = docs.astype(dtype, copy=False).T  # (dim, n_docs)
    score_rows = max(1, _SCORE_ELEMENTS // n_docs)
    for start in range(0, n_queries, score_rows):
        block = queries[start : start + score_rows].astype(dtype, copy=False) @ docs_t  # (s, n_docs)
        top, best = top_k_from_scores(block, width, doc_ids)
        indices[start : start + len(block)], values[start : start + len(block)] = top, best
    return indices, values


def ranks_to_dict(
    ranks: np.ndarray,
    relevant: np.ndarray | Sequence[Sequence[int]],
    query_ids: Sequence[str],
    doc_ids: Sequence[str] | np.ndarray,
) -> Ranks:
    """Dict form of ``ranks_from_scores`` output, for ``evaluate_ranks``.

    Args:
        ranks: (n_queries, r) as returned by ``ranks_from_scores``.
        relevant: the indices (or mask) passed to ``ranks_from_scores``.
        query_ids: the id of each row; doc_ids: the id of each column.
    """
    ranks = np.asarray(ranks)
    indices = _check_indices(relevant, len(query_ids), len(doc_ids))
    if ranks.shape != indices.shape:
        raise ValueError(f"ranks shape {ranks.shape} does not match relevant indices {indices.shape}")
    ids = [str(d) for d in doc_ids]
    out: Ranks = {}
    for qid, row_idx, row_ranks in zip(query_ids, indices.tolist(), ranks.tolist(), strict=True):
        out[qid] = {ids[j]: r for j, r in zip(row_idx, row_ranks, strict=True) if j >= 0 and r > 0}
    return out


def top_k_to_run(
    indices: np.ndarray, values: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str] | np.ndarray
) -> Run:
    """A BEIR run from ``top_k_from_scores`` output: ``{qid: {doc_id: score}}``."""
    indices, values = np.asarray(indices), np.asarray(values)
    if indices.shape != values.shape or indices.ndim != 2 or indices.shape[0] != len(query_ids):
        raise ValueError("indices and values must both be (len(query_ids), k)")
    ids = [str(d) for d in doc_ids]
    return {
        qid: {ids[j]: float(v) for j, v in zip(row_idx, row_vals, strict=True)}
        for qid, row_idx, row_vals in zip(query_ids, indices.tolist(), values.tolist(), strict=True)
    }
