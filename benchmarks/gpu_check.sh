#!/usr/bin/env bash
# The GPU checks of issue 15 as one command for a lent GPU (the `device` tool's `run`):
# the CUDA tests (a training step that never synchronises, a NaN caught one micro-step
# later) and vs_hf.py on CUDA at base size with MFU against the GPU's measured peak.
#
# Prepare here, once (the data beside the checkout does not travel):
#   mkdir -p .gpu && cp ../shared/data/coco/karpathy_test_captions.json .gpu/ \
#     && cp "$(.venv/bin/python -c 'from vlp.convert import resolve_source as r; print(r("minilm"))')/vocab.txt" .gpu/ \
#     && (grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude)
# then run `bash benchmarks/gpu_check.sh` with carry [".gpu"] (timeout_s 540). Its results
# come back under $OUT: copy vs_hf_cuda.json to benchmarks/results/.
#
# The machine's python3 holds CUDA torch and transformers; vlp runs from src/. Budget:
# BATCH pairs a fixed batch (default 64), ROUNDS timed rounds (default 3).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 180 python3 -m pytest -p no:cacheprovider -q -rs tests/train/test_cuda.py \
    2>&1 | tee "$OUT/test_cuda.log"
tests=$?
timeout 330 python3 benchmarks/vs_hf.py --device cuda --precisions bf16 fp32 \
    --captions .gpu/karpathy_test_captions.json --vocab .gpu/vocab.txt \
    --batch-size "${BATCH:-64}" --steps 4 --rounds "${ROUNDS:-3}" --batches 4 \
    --out "$OUT/vs_hf_cuda.json" 2>&1 | tee "$OUT/vs_hf_cuda.log"
bench=$?
echo "tests rc=$tests, vs_hf rc=$bench"
exit $((tests || bench))
