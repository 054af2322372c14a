#!/usr/bin/env bash
# Build-check-time on a GPU machine in one go: install, GPU correctness tests, the attention benchmark.
#   bash kernels/gpu_run.sh quick|full [extra sparsebench overrides]
# Writes under ${OUT:-outputs/gpu}: pytest log, the benchmark record and its table.
#   bash kernels/gpu_run.sh train [sparsebench-train overrides]
# One command of the testbed's training (conf/train/testbed.yaml), resuming from .train/; copies the new
# checkpoint, the log and the command's eval under $OUT (bring .train/ back before the next command).
set -uo pipefail
MODE=${1:-quick}; shift || true
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .wheels ]; then python3 -m pip install --no-index --no-build-isolation -q .wheels/* 2>&1 | tail -2; fi
if ! python3 -m pip install --no-deps --no-build-isolation -q -e . >"$OUT/install.log" 2>&1; then
  # old setuptools: lay the package out by hand (kernels/ policies/ evals/ conf/ as sparsebench.*)
  SITE=/tmp/sb_site; mkdir -p $SITE/sparsebench
  for f in sparsebench/*; do ln -sf "$PWD/$f" $SITE/sparsebench/; done
  for d in kernels policies evals conf; do ln -sfn "$PWD/$d" $SITE/sparsebench/$d; done
  export PYTHONPATH=$SITE:${PYTHONPATH:-}
  printf '#!/usr/bin/env python3\nfrom sparsebench.cli import main\nmain()\n' > /tmp/sparsebench && chmod +x /tmp/sparsebench
  export PATH=/tmp:$PATH
fi
if [ "$MODE" = train ]; then
  mkdir -p .train
  # hard stop well inside an 8-minute command; the trainer stops itself after train.command_minutes
  timeout 470 python3 -m sparsebench.train_testbed train out_dir=.train "$@" 2>&1 | grep -v "^\[train\] step [0-9]*[1-9]0 " | tail -60
  cp .train/ckpt-*.safetensors .train/meta.json .train/train_log.jsonl "$OUT"/
  ls -t .train/eval_cmd*.json 2>/dev/null | head -1 | xargs -r -I{} cp {} "$OUT"/
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
echo "== GPU correctness tests"
python3 -m pytest -q -m gpu tests/test_gpu_kernels.py -x -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log" | tail -6
echo "== attention benchmark ($MODE)"
if [ "$MODE" = quick ]; then
  ARGS="task.prefill_lengths=[8192,32768] task.decode_lengths=[8192,131072] task.rep_ms=50"
else
  ARGS=""
fi
sparsebench task=latency_attention $ARGS paths.output_dir="$OUT/bench" "$@" 2>&1 | grep -v "sample/s" | tail -4
# this call's run (the newest): an $OUT used before holds earlier runs too
RUN=$(ls -td "$OUT"/bench/runs/latency_attention/*/*/ 2>/dev/null | head -1)
cp "$RUN/attention_table.md" "$OUT/attention_table.md" 2>/dev/null
cp "$RUN/samples.jsonl" "$OUT/attention_samples.jsonl" 2>/dev/null
cp "$RUN/result.json" "$OUT/attention_result.json" 2>/dev/null
cat "$OUT/attention_table.md" 2>/dev/null | cut -c1-160
