#!/usr/bin/env bash
# Train every MoMask stage in order, assemble the bundle and evaluate it.
# Usage: training/run_all.sh CONFIG DATA OUT [extra flags for every stage, e.g. --set vq.max_steps=100]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG DATA OUT [extra flags]" >&2; exit 2
fi
CONFIG=$1; DATA=$2; OUT=$3; shift 3
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
run() { echo "== $*" >&2; "$PY" "$@"; }
run "$HERE/train_evaluator.py" --config "$CONFIG" --data "$DATA" --out "$OUT/evaluator" "$@"
run "$HERE/train_vq.py"        --config "$CONFIG" --data "$DATA" --out "$OUT/vq" --evaluator "$OUT/evaluator/evaluator.pt" "$@"
run "$HERE/train_mask.py"      --config "$CONFIG" --data "$DATA" --out "$OUT/mask" --vq "$OUT/vq" --evaluator "$OUT/evaluator/evaluator.pt" "$@"
run "$HERE/train_residual.py"  --config "$CONFIG" --data "$DATA" --out "$OUT/residual" --vq "$OUT/vq" --evaluator "$OUT/evaluator/evaluator.pt" "$@"
run "$HERE/train_length.py"    --config "$CONFIG" --data "$DATA" --out "$OUT/length" --vq "$OUT/vq" "$@"
run "$HERE/make_bundle.py"     --config "$CONFIG" --data "$DATA" --vq "$OUT/vq" --mask "$OUT/mask" --residual "$OUT/residual" --length "$OUT/length" --out "$OUT/momask_bundle.pt"
run "$HERE/evaluate.py"        --config "$CONFIG" --data "$DATA" --evaluator "$OUT/evaluator/evaluator.pt" --vq "$OUT/vq" --out "$OUT/eval_vq"
run "$HERE/evaluate.py"        --config "$CONFIG" --data "$DATA" --evaluator "$OUT/evaluator/evaluator.pt" --bundle "$OUT/momask_bundle.pt" --out "$OUT/eval_momask"
echo "bundle: $OUT/momask_bundle.pt; tables: $OUT/eval_vq.md $OUT/eval_momask.md" >&2
