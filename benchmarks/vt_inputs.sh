#!/usr/bin/env bash
# The inputs of the vocabulary-transfer benchmarks (docs/benchmarks.md, "Vocabulary transfer
# (step-0)"), built with langgraft offline into runs/vt/: both Bibles prepared, a 16k Chichewa
# WordPiece tokenizer, MiniLM with a recovered MLM head, word-level fastText models, a dictionary,
# FOCUS's token-level fastText and an eflomal alignment table. Each step is skipped when its output
# exists, so an interrupted run continues. Run from the repository root with langgraft's
# environment active (`langgraft` on PATH):
#     bash benchmarks/vt_inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
V=runs/vt
step() {  # step OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
    local out=$1; shift
    if [ -e "$out" ]; then echo "have $out"; else echo "+ $*"; "$@"; fi
}
step $V/eng langgraft corpus prepare --bible eng --out $V/eng
step $V/nya langgraft corpus prepare --bible nya --out $V/nya
step $V/nya-wp16k langgraft tokenizer train --source minilm --vocab-size 16000 --out $V/nya-wp16k \
    --corpus $V/nya/train.txt
step $V/minilm-mlm langgraft head recover --model minilm --corpus $V/eng/train.txt --out $V/minilm-mlm --max-steps 100
step $V/ft/eng.bin langgraft resources fasttext --corpus $V/eng/train.txt --out $V/ft/eng.bin --dim 100
step $V/ft/nya.bin langgraft resources fasttext --corpus $V/nya/train.txt --out $V/ft/nya.bin --dim 100
step $V/dict.tsv langgraft resources dictionary --parallel $V/eng/train.tsv $V/nya/train.tsv --out $V/dict.tsv
step $V/ft/nya-tokens.bin langgraft resources fasttext --tokenizer $V/nya-wp16k --corpus $V/nya/train.txt \
    --out $V/ft/nya-tokens.bin --dim 100 --model cbow --epochs 3 --min-count 10   # FOCUS's settings
step $V/align.tsv langgraft resources align --parallel $V/eng/train.tsv $V/nya/train.tsv --source-tokenizer minilm \
    --target-tokenizer $V/nya-wp16k --out $V/align.tsv
