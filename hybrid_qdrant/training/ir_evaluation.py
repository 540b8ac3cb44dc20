"""A small mono / cross / multilingual retrieval check on held-out pairs, run during training.

Uses sentence-transformers' InformationRetrievalEvaluator (exact cosine search in memory): per query
language X, ``mono-X`` searches the passages in X, ``cross-X`` the passages in every other language;
``multi`` searches the pooled passages of all languages. A passage is relevant to a query when it
belongs to the query's group (any translation of the gold passage).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sentence_transformers.base.evaluation import SequentialEvaluator
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from hybrid_qdrant.types import Pair


def build_ir_evaluator(
    pairs: Sequence[Pair], query_prefix: str, passage_prefix: str, batch_size: int = 32
) -> SequentialEvaluator:
    """Evaluators ``mono-X``, ``cross-X`` (for languages with translations) and ``multi``.

    The sequential evaluator's score is the mean nDCG@10 over all of them.
    """
    passage_ids: dict[tuple[str, str], str] = {}  # (lang, text) -> id
    corpus: dict[str, str] = {}
    passage_lang: dict[str, str] = {}
    group_passages: dict[str, set[str]] = defaultdict(set)
    queries: dict[str, str] = {}
    query_info: dict[str, tuple[str, str]] = {}  # id -> (lang, group)
    for number, pair in enumerate(pairs):
        group = pair.group_id if pair.group_id is not None else f"\0{number}"
        pid = passage_ids.setdefault((pair.lang, pair.passage), f"p{len(passage_ids)}")
        corpus[pid], passage_lang[pid] = pair.passage, pair.lang
        group_passages[group].add(pid)
        qid = f"q{number}"
        queries[qid], query_info[qid] = pair.query, (pair.lang, group)

    def evaluator(name: str, query_langs: set[str], corpus_lang) -> InformationRetrievalEvaluator | None:
        sub_corpus = {pid: text for pid, text in corpus.items() if corpus_lang(passage_lang[pid])}
        relevant = {}
        for qid, (lang, group) in query_info.items():
            if lang in query_langs:
                hits = {pid for pid in group_passages[group] if pid in sub_corpus}
                if hits:
                    relevant[qid] = hits
        if not relevant:
            return None
        return InformationRetrievalEvaluator(
            queries={qid: queries[qid] for qid in relevant},
            corpus=sub_corpus,
            relevant_docs=relevant,
            name=name,
            query_prompt=query_prefix,
            corpus_prompt=passage_prefix,
            batch_size=batch_size,
            mrr_at_k=[10],
            ndcg_at_k=[10],
            accuracy_at_k=[1, 10],
            precision_recall_at_k=[10],
            map_at_k=[100],
            write_csv=False,
        )

    languages = sorted({lang for lang, _ in query_info.values()})
    evaluators = []
    for lang in languages:
        evaluators.append(evaluator(f"mono-{lang}", {lang}, lambda other, lang=lang: other == lang))
        evaluators.append(evaluator(f"cross-{lang}", {lang}, lambda other, lang=lang: other != lang))
    evaluators.append(evaluator("multi", set(languages), lambda other: True))
    chosen = [e for e in evaluators if e is not None]
    return SequentialEvaluator(chosen, main_score_function=lambda scores: sum(scores) / len(scores))
