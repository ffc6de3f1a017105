#!/usr/bin/env bash
# Reproduces every table in BENCHMARKS.md on this machine (about 100 minutes on 2 CPU cores; step 6, whole and
# tiled vit_b up to 36 megapixels, is about 55 of them).
# Raw outputs land in benchmarks/results/; model files in benchmarks/work/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
GSAM=${GSAM:-.venv/bin/gsam}
R=benchmarks/results
W=benchmarks/work
mkdir -p "$R" "$W"
# A step whose result file exists is skipped (FORCE=1 reruns everything), so an interrupted run resumes.
fresh() { [ "${FORCE:-0}" = 1 ] || [ ! -s "$1" ]; }

# 1. Training throughput (fp32 and bf16 autocast side by side), bf16 accuracy, forward MACs
fresh "$R/train_throughput.md" && $PY benchmarks/train_throughput.py --models tiny,vit_b --crops 128,256 --batch 2 --amp off,bf16 --steps 3 --warmup 1 > "$R/train_throughput.md"
fresh "$R/amp_miou.md" && $PY benchmarks/amp_miou.py --seeds 0,1 --epochs 8 > "$R/amp_miou.md"
fresh "$R/macs.md" && $PY benchmarks/macs.py > "$R/macs.md"
# GPU only (prints "skipped" without CUDA): GSAM vit_b at 256 against SAM vit_b at 1024, time and peak memory
fresh "$R/gpu_train_memory.md" && $PY benchmarks/gpu_train_memory.py --batch 2 --amp off,bf16 > "$R/gpu_train_memory.md"

# 2. Export time/size, onnxruntime against PyTorch eager
fresh "$R/export_latency.md" && $PY benchmarks/export_latency.py --models tiny,vit_b --sizes 256,512,1024 --repeats 3 > "$R/export_latency.md"

# 3. gsam bench: the demo's trained tiny model, every CPU backend, and SAM ViT-B at 1024
test -f "$W/demo/run/best.pt" || $GSAM demo --out "$W/demo" --repeats 1
fresh "$R/bench_tiny.txt" && $GSAM bench --model "$W/demo/run" --onnx "$W/demo/model.onnx" \
  --backend onnxruntime,torch,triton-grpc,triton-http --sizes 256x256,512x512,480x640,1024x1024 \
  --concurrency 1,2 --warmup 2 --iters 10 --baseline sam-vit-b --out "$R/bench_tiny" > "$R/bench_tiny.txt"

# 4. gsam bench: vit_b (random weights: latency does not depend on them)
test -f "$W/vit_b.pt" || $PY -c "
import torch; from gsam.model import build_gsam; from gsam.model.checkpoint import save_gsam_checkpoint
torch.manual_seed(0); save_gsam_checkpoint('$W/vit_b.pt', build_gsam('vit_b', num_classes=3))"
fresh "$R/bench_vit_b.txt" && $GSAM bench --model "$W/vit_b.pt" --backend onnxruntime,torch,triton-grpc --sizes 256x256,512x512,480x640 \
  --warmup 1 --iters 5 --out "$R/bench_vit_b" > "$R/bench_vit_b.txt"

# 5. Serving: wire bytes and p50 at 1024x1024 (FP32, UINT8, gsam_image), throughput with and without batching
fresh "$R/serving.md" && $PY benchmarks/serving.py --onnx "$W/demo/model.onnx" --size 1024 --iters 5 \
  --batch-size 256 --requests 32 --concurrency 1,4,8 --out "$R/serving.md"

# 6. fp32 / fp16 / int8 onnxruntime side by side, and the variants' gates on the demo's data
fresh "$R/precision.md" && $PY benchmarks/precision.py --run "$W/demo/run" --models run,vit_b --sizes 256,512,1024 \
  --vit-b-sizes 512,1024 --repeats 3 --exporter torchscript > "$R/precision.md"

# 7. Soak against a real Triton server (gsam_python over HTTP and gRPC, gsam_image)
fresh "$R/soak.json" && $PY benchmarks/soak.py --onnx "$W/demo/model.onnx" --requests 4000 --threads 16 --aborts 10 --out "$R/soak.json"
# 6. Whole-image against tiled inference: latency and peak memory at 1, 4, 16, 36 megapixels
test -f "$W/tiny.onnx" || $PY -c "
import torch; from gsam.model import build_gsam; from gsam.export.onnx import export_onnx
torch.manual_seed(0); export_onnx(build_gsam('tiny', num_classes=3).eval(), '$W/tiny.onnx', exporter='torchscript')"
test -f "$W/vit_b.onnx" || $GSAM export onnx "$W/vit_b.pt" --out "$W/vit_b.onnx" --exporter torchscript
fresh "$R/tiling.md" && $PY benchmarks/tiling.py --model tiny="$W/tiny.onnx" --model vit_b="$W/vit_b.onnx" \
  --sizes 1024,2048,4096,6000 --model-whole-max-mp vit_b=5 --agreement "$W/demo/run" > "$R/tiling.md"
echo all benchmark results are in $R
