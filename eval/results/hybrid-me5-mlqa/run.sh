#!/usr/bin/env bash
# The hybrid-batch experiment of issue 3, exactly as run (from the repository root, on 2 CPU cores):
# multilingual-e5-small (rebuilt offline) fine-tuned on the MLQA-R parallel pairs with X-X-mono (alpha 1),
# X-Y (alpha 0) and hybrid (alpha 0.5) batches, each evaluated zero-shot on XQuAD-R (no XQuAD text in training).
set -euo pipefail
OUT=eval/results/hybrid-me5-mlqa
XQUAD=../shared/data/lareqa/xquad-r
[ -d models/me5-small ] || python ../shared/tools/build_me5_small.py --out models/me5-small
for run in mono:1 cross:0 hybrid:0.5; do
  name=${run%%:*}; alpha=${run##*:}
  [ -d runs/me5-mlqa-$name/final ] || hq train training/cpu-small.toml --alpha "$alpha" --batch-size 32 \
      --max-steps 120 --seed 42 --output-dir runs/me5-mlqa-$name \
      --set validation.eval_steps=60 --set output.save_steps=60 2>&1 | tee "$OUT/train-$name.log"
done
[ -f "$OUT/xquad-r-base.json" ] || hq evaluate eval/xquad-r.toml --data-dir "$XQUAD" --model models/me5-small \
    --output "$OUT/xquad-r-base.json"
for name in mono cross hybrid; do
  hq evaluate eval/xquad-r.toml --data-dir "$XQUAD" --model runs/me5-mlqa-$name/final \
      --output "$OUT/xquad-r-$name.json"
done
for name in mono cross; do
  hq compare "$OUT/xquad-r-hybrid.json" "$OUT/xquad-r-$name.json" --metrics map,rank_distance \
      --output "$OUT/compare-hybrid-vs-$name.json"
done
