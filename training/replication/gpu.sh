#!/usr/bin/env bash
# The replication grid at the paper's scale, for a machine with an accelerator (arXiv 2408.10536: batch
# 100, lr 3e-5, AdamW, alpha in {1, 0.5, 0}; XLM-R or LaBSE). It writes a training config, an evaluation
# suite and a sweep file under $OUT, then runs `hq sweep` on them (resumable: run it again after an
# interruption). Every setting has a default; override any with the environment:
#
#   MODEL=/models/xlm-roberta-base LABEL=xlmr-base bash training/replication/gpu.sh
#   MODEL=/models/LaBSE LABEL=labse STEPS=3000 bash training/replication/gpu.sh
#
# MODEL      a local sentence-transformers or Hugging Face encoder directory (or a hub id where the hub
#            is reachable): xlm-roberta-base (MIT) or sentence-transformers/LaBSE (Apache-2.0).
# DATA       folder holding mlqa-r/ (training: LAReQA commit 354d67d, CC BY-NC 4.0) and xquad-r/
#            (zero-shot evaluation, CC BY-SA 4.0), as in google-research-datasets/lareqa.
# TRAIN_SET  mlqa-r (default), or xquad-r only for a pipeline smoke test.
# The table, plots and every cell's report, per-query values and logs go to $RESULTS.
set -euo pipefail

MODEL=${MODEL:?set MODEL to a local encoder directory, e.g. MODEL=/models/xlm-roberta-base}
LABEL=${LABEL:-$(basename "$MODEL")}
DATA=${DATA:-../shared/data/lareqa}
TRAIN_SET=${TRAIN_SET:-mlqa-r}
ALPHAS=${ALPHAS:-1.0, 0.5, 0.0}
SEEDS=${SEEDS:-1, 2, 3}
BATCH=${BATCH:-100}
STEPS=${STEPS:-2000}
LR=${LR:-3e-5}
MAX_LEN=${MAX_LEN:-128}
PRECISION=${PRECISION:-auto}
DEVICE=${DEVICE:-cuda}
EVAL_BATCH=${EVAL_BATCH:-256}
OUT=${OUT:-runs/replication-$LABEL}
RESULTS=${RESULTS:-eval/results/replication-$LABEL}
TRAIN_LANGUAGES=${TRAIN_LANGUAGES:-}   # e.g. '"de", "en"'; default: every language of the set
EVAL_LANGUAGES=${EVAL_LANGUAGES:-}     # default: all 11 of XQuAD-R

if [[ "$MODEL" == /* || "$MODEL" == .* || "$MODEL" == ~* ]] && [[ ! -d "$MODEL" ]]; then
  echo "error: model folder not found: $MODEL" >&2; exit 2
fi
for dir in "$DATA/$TRAIN_SET" "$DATA/xquad-r"; do
  [[ -d "$dir" ]] || { echo "error: data folder not found: $dir (set DATA)" >&2; exit 2; }
done
mkdir -p "$OUT"

cat > "$OUT/train.toml" <<TOML
[model]
name = "$MODEL"
max_seq_length = $MAX_LEN
query_prefix = "query: "
passage_prefix = "passage: "

[[data.sources]]
kind = "lareqa"
name = "$TRAIN_SET"
path = "$DATA/$TRAIN_SET"
hard_negatives = "paragraph"
${TRAIN_LANGUAGES:+languages = [$TRAIN_LANGUAGES]}

[data]
negatives = "require"

[train]
batch_size = $BATCH
learning_rate = $LR
weight_decay = 0.01
warmup_ratio = 0.1
max_steps = $STEPS
precision = "$PRECISION"

[loss]
temperature = 0.05

[output]
save_steps = $(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))
save_total_limit = 1
logging_steps = $(( STEPS / 50 > 0 ? STEPS / 50 : 1 ))
TOML

cat > "$OUT/eval.toml" <<TOML
[benchmark]
name = "xquad-r"
data_dir = "$DATA/xquad-r"
${EVAL_LANGUAGES:+languages = [$EVAL_LANGUAGES]}

[encoder]
batch_size = $EVAL_BATCH
device = "$DEVICE"

[evaluate]
settings = ["mono", "cross", "multi"]
TOML

cat > "$OUT/sweep.toml" <<TOML
[sweep]
train_config = "$OUT/train.toml"
eval_config = "$OUT/eval.toml"
alphas = [$ALPHAS]
seeds = [$SEEDS]
dir = "$OUT"
results = "$RESULTS"
resamples = 10000
reference_alpha = 0.5

[[models]]
label = "$LABEL"
name = "$MODEL"
TOML

echo "configs in $OUT; running the sweep (results: $RESULTS)" >&2
exec hq sweep "$OUT/sweep.toml" -v
