#!/usr/bin/env bash
# Deployment checks for the first machine with an NVIDIA GPU (run from the repository root after `make setup`).
# Installs the GPU runtimes into .venv, exports the graph, builds TensorRT engines, runs the CUDA/TensorRT parity
# tests (skipped on CPU-only machines, run here), then the interleaved A/B of every backend against torch.
set -euo pipefail
PY=.venv/bin/python
OUT=${OUT:-out/deploy-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# 1. GPU runtimes (versions as the driver allows; keep numpy/torch where setup put them).
$PY -m pip install "numpy==1.26.4" onnxruntime-gpu tensorrt | tail -2
$PY -m pip uninstall -y onnxruntime  # onnxruntime-gpu provides the same module
$PY -c "import onnxruntime as o, tensorrt as t; print(o.__version__, o.get_available_providers(), t.__version__)" \
  | tee "$OUT/runtimes.txt"
# 2. Graphs: fp32 and fp16; engines for this GPU (timing cache kept beside each graph).
$PY -m gsdocc_ros.tools.cli export --random-weights --out "$OUT/fp32" --tensorrt --force
$PY -m gsdocc_ros.tools.cli export --random-weights --out "$OUT/fp16" --precision fp16 --tensorrt --force
# 3. Parity on CUDA: onnxruntime CUDA EP, onnxruntime TensorRT EP, TensorRT (fp32, tolerance 1e-4).
PYTHONPATH=. $PY -m pytest -q test/deploy -k "cuda" | tee "$OUT/parity.txt"
# 4. Speed and memory, one interleaved run per precision.
$PY -m gsdocc_ros.tools.cli bench --device cuda --runs 20 --warmup 3 \
  --backend onnxruntime,onnxruntime-tensorrt,tensorrt --graph-dir "$OUT/fp32" --json "$OUT/bench-fp32.json" --force
$PY -m gsdocc_ros.tools.cli bench --device cuda --precision fp16 --runs 20 --warmup 3 \
  --backend tensorrt --graph-dir "$OUT/fp16" --json "$OUT/bench-fp16.json" --force
echo "results in $OUT: copy the tables into benchmarks/README.md with the GPU name"
