"""Check a report against an independent implementation of the LAReQA protocol.

    python eval/check_lareqa.py eval/results/xquad-r-me5-small.json --data-dir ../shared/data/lareqa

Nothing of hq's loaders, evaluation or metrics is used: the candidates and relevant sets are built as
LAReQA's released code builds them (google-research/xtreme ``third_party/utils_lareqa.py``:
``generate_examples`` / ``load_data``: the context slice of every sentence of every paragraph with a
question, gold = the sentences whose text equals the first sentence holding ``answer_start``), every
query is scored against its setting's candidates with a matrix product, mAP is scikit-learn's
``average_precision_score`` (as LAReQA's ``mean_avg_prec``; computed directly where no scores tie,
which is the same number), R@k and rank distance come from the full
ranking (rank distance: max - min rank of a query's relevant candidates, undefined for a query with
one relevant candidate), and the macro averages are over the slices (languages or ordered language
pairs). Only the vectors come from hq's encoder and embedding cache (the same model and prefixes as
the report; a cached run encodes nothing).

It prints the report's value, the reference value and their difference for the macro metrics an
independent check compares (mono/cross/multi mAP, mono and cross R@1, multi R@10, multi rank
distance) and exits 1 when one differs by more than ``--tolerance`` (rank distance: relative).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

CHECKED = (
    "mono/map",
    "cross/map",
    "multi/map",
    "mono/recall@1",
    "cross/recall@1",
    "multi/recall@10",
    "multi/rank_distance",
)
LANGUAGES = {
    "xquad-r": ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    "mlqa-r": ("ar", "de", "en", "es", "hi", "vi", "zh"),
}


def load_lareqa_reference(folder: Path, languages: tuple[str, ...]):
    """Questions and candidates as LAReQA builds them.

    Returns:
        questions: list of (xling_id, lang, text); candidates: list of (lang, text);
        gold: {xling_id: set of candidate indices}.
    """
    questions: list[tuple[str, str, str]] = []
    candidates: list[tuple[str, str]] = []
    index: dict[str, int] = {}
    gold: dict[str, set[int]] = {}
    for lang in languages:
        data = json.loads((folder / f"{lang}.json").read_text(encoding="utf-8"))
        number = 0
        for passage in data["data"]:
            for paragraph in passage["paragraphs"]:
                number += 1
                context, breaks = paragraph["context"], paragraph["sentence_breaks"]
                sentences = [context[start:end] for start, end in breaks]
                for item in paragraph["qas"]:
                    start = item["answers"][0]["answer_start"]
                    answer = next((context[s:e] for s, e in breaks if s <= start < e), None)
                    if not answer:
                        continue
                    questions.append((item["id"], lang, item["question"]))
                    for position, sentence in enumerate(sentences):
                        uid = f"{lang}_{number}_{position}"
                        if uid not in index:
                            index[uid] = len(candidates)
                            candidates.append((lang, sentence))
                        if sentence == answer:
                            gold.setdefault(item["id"], set()).add(index[uid])
    return questions, candidates, gold


def _query_metrics(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, float, float, float]:
    """AP, R@1, R@10 and max-min rank of one query's relevant candidates (scores over the pool).

    AP is scikit-learn's ``average_precision_score`` (LAReQA's); without tied scores it equals the mean
    of k / rank_k over the relevant items, which is computed directly, and scikit-learn is called only
    for a query with ties at a relevant item's score.
    """
    rel_scores = scores[relevant]  # (k,)
    above = (scores[:, None] > rel_scores[None, :]).sum(axis=0)  # (k,) candidates strictly higher
    ranks = np.sort(1 + above)  # ties count in the relevant item's favour for R@k
    tied = (scores[:, None] == rel_scores[None, :]).sum(axis=0) > 1
    if tied.any():
        labels = np.zeros(scores.size, dtype=np.int8)
        labels[relevant] = 1
        ap = float(average_precision_score(labels, scores))
    else:
        ap = float(np.mean(np.arange(1, ranks.size + 1) / ranks))
    r1 = float(np.count_nonzero(ranks <= 1)) / relevant.size
    r10 = float(np.count_nonzero(ranks <= 10)) / relevant.size
    distance = float(ranks.max() - ranks.min()) if relevant.size > 1 else np.nan  # one item: no spread
    return ap, r1, r10, distance


def reference_metrics(questions, candidates, gold, qvecs: np.ndarray, pvecs: np.ndarray, langs) -> dict:
    """Macro metrics of the three settings from the vectors (questions x candidates, unit norm)."""
    cand_lang = np.array([lang for lang, _ in candidates])
    pools = {lang: np.flatnonzero(cand_lang == lang) for lang in langs}
    pools[None] = np.arange(len(candidates))
    by_lang: dict[str, list[int]] = {}
    for qi, (_, qlang, _) in enumerate(questions):
        by_lang.setdefault(qlang, []).append(qi)
    slices: dict[str, list[tuple[float, float, float, float]]] = {}
    for qlang, rows in by_lang.items():
        for setting, targets in (
            ("mono", [qlang]),
            ("cross", [p for p in langs if p != qlang]),
            ("multi", [None]),
        ):
            for target in targets:
                pool = pools[target]
                position = np.full(len(candidates), -1)
                position[pool] = np.arange(pool.size)
                scores = qvecs[rows] @ pvecs[pool].T  # (queries of qlang, pool)
                values = []
                for k, qi in enumerate(rows):
                    relevant = position[sorted(gold[questions[qi][0]])]
                    relevant = relevant[relevant >= 0]
                    if relevant.size:  # no relevant candidate in the target language: dropped
                        values.append(_query_metrics(scores[k], relevant))
                if values:
                    slices[f"{setting}/{qlang}-{target or 'all'}"] = values
    out = {}
    for setting in ("mono", "cross", "multi"):
        with warnings.catch_warnings():  # rank distance is undefined (NaN) wherever one item is relevant
            warnings.simplefilter("ignore", RuntimeWarning)
            rows = [np.nanmean(v, axis=0) for k, v in slices.items() if k.startswith(setting + "/")]
            means = np.nanmean(rows, axis=0)
        out[f"{setting}/map"], out[f"{setting}/recall@1"], out[f"{setting}/recall@10"] = means[:3]
        if setting == "multi":
            out["multi/rank_distance"] = means[3]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="an hq evaluate report (JSON) of xquad-r or mlqa-r")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with xquad-r/ and mlqa-r/")
    parser.add_argument("--model", help="model (default: the report's)")
    parser.add_argument("--query-prefix", default="query: ")
    parser.add_argument("--passage-prefix", default="passage: ")
    parser.add_argument("--tolerance", type=float, default=0.002)
    args = parser.parse_args()

    from hybrid_qdrant.encoding.cache import CachedEncoder
    from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder

    report = json.loads(args.report.read_text(encoding="utf-8"))
    name, langs = report["benchmark"], tuple(report["languages"])
    folder = args.data_dir / name if (args.data_dir / name).is_dir() else args.data_dir
    questions, candidates, gold = load_lareqa_reference(folder, langs)
    settings = EncoderSettings(
        model=args.model or report["model"],
        query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix,
    )
    encoder = CachedEncoder(SentenceTransformerEncoder(settings))
    qvecs = encoder.encode_queries([text for _, _, text in questions])  # (questions, dim)
    pvecs = encoder.encode_passages([text for _, text in candidates])  # (candidates, dim)
    reference = reference_metrics(questions, candidates, gold, qvecs, pvecs, langs)
    print(f"{name}: {len(questions)} questions, {len(candidates)} candidates (LAReQA's code: as built here)")
    counts = report["counts"]
    print(f"report counts: {counts.get('queries')} queries, {counts.get('passages')} passages")
    worst = 0.0
    print("| metric | report | reference | difference |\n|---|---|---|---|")
    for key in CHECKED:
        mine, ref = report["metrics"][key], reference[key]
        diff = mine - ref
        bad = abs(diff) / ref if key.endswith("rank_distance") else abs(diff)
        worst = max(worst, bad / (0.01 if key.endswith("rank_distance") else args.tolerance))
        print(f"| {key} | {mine:.5f} | {ref:.5f} | {diff:+.5f} |")
    ok = worst <= 1.0
    print("agree within tolerance" if ok else "DISAGREE beyond tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
