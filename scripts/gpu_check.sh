#!/usr/bin/env bash
# The GPU check, one short script (under 10 minutes on one GPU), run from the repository root in an environment
# where `make setup` installed vLLM with CUDA (scripts/setup_env.sh picks `vllm` when nvidia-smi sees a GPU):
#   1. hf vs vLLM parity on SmolLM2-135M-Instruct in bf16 (scripts/gpu_parity.py);
#   2. a 3-cell study (configs/gpu_check.yaml): LoRA SFT cells kept as adapters, DPO on each, every checkpoint
#      evaluated by vLLM in bf16 with the adapters on one multi-LoRA engine, then the report;
#   3. generation throughput of our vLLM path against lm-eval's vLLM backend on the same IFEval prompts
#      (perf/eval_e2e.py --backend vllm: wall time from the shell, both tools).
# It prints the figures; everything it writes goes under ${OUT:-/tmp/gpu-check}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
nvidia-smi -L
"$PY" -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, '| vllm', vllm.__version__)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
step() { echo; echo "== $1 ($(date +%T))"; }

step "1. hf vs vLLM, SmolLM2 bf16"
"$PY" scripts/gpu_parity.py

step "2. 3-cell LoRA study, vLLM multi-LoRA"
start=$SECONDS
"$PY" -m evalsuite study --config configs/gpu_check.yaml --out "$OUT/study"
echo "study wall: $((SECONDS - start)) s"
"$PY" -m evalsuite study status "$OUT/study"

step "3. IFEval generation: evalsuite (vLLM) vs lm-eval (vLLM), bf16"
"$PY" perf/eval_e2e.py --backend vllm --dtype bfloat16 --benchmarks ifeval --ifeval 541 --max-new-tokens 1280 \
  --skip-perturbed --out "$OUT/e2e"
echo; echo "== done ($(date +%T)); outputs in $OUT"
