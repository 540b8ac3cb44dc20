"""Quality of each backend option on a benchmark: macro metrics of its report minus the torch baseline's.

    python eval/backend_quality.py eval/results/xquad-r-me5-small.json eval/results/backends/xquad-r-*.json

Prints a Markdown table of the macro mono / cross / multi mAP and recall@1 (points, x100) of each report
minus the baseline's, the largest absolute change of the 132 per-setting mAPs, whether every macro mAP
stays within ``--bound`` points below the baseline (the default-choice rule: no loss beyond 0.3 points),
and the report's timings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MACROS = ("mono/map", "cross/map", "multi/map", "mono/recall@1", "cross/recall@1", "multi/recall@1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument("--bound", type=float, default=0.3, help="largest allowed loss, mAP points")
    args = parser.parse_args()

    base = json.loads(args.baseline.read_text(encoding="utf-8"))
    print(
        "| option | runs | " + " | ".join(f"d {m}" for m in MACROS) + " | max abs d setting mAP | "
        "within bound | encode s (ingest + queries) |"
    )
    print("|---" * (len(MACROS) + 5) + "|")
    for path in args.reports:
        report = json.loads(path.read_text(encoding="utf-8"))
        fingerprint = json.loads(report.get("model_fingerprint", "{}"))
        deltas = [100 * (report["metrics"][m] - base["metrics"][m]) for m in MACROS]
        per_setting = [
            abs(100 * (value - base["metrics"][key]))
            for key, value in report["metrics"].items()
            if key.endswith("/map") and key.count("/") == 2 and key in base["metrics"]
        ]
        within = all(d >= -args.bound for d in deltas[:3])
        timings = report.get("timings", {})
        encode = timings.get("ingest", 0) + timings.get("encode_queries", 0)
        print(
            f"| {path.stem} | {fingerprint.get('backend', 'torch/none')} | "
            + " | ".join(f"{d:+.2f}" for d in deltas)
            + f" | {max(per_setting):.2f} ({len(per_setting)}) | {'yes' if within else 'no'} | {encode:.0f} |"
        )


if __name__ == "__main__":
    main()
