#!/usr/bin/env bash
# The prepared GPU check (one GPU, no downloads, ≤ ~8 minutes on an H100/H200-class card). From the repository root:
#     bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. bf16 autocast updates of a GPT-B-sized policy (dim 768, 12 layers, V 16384, T 256), shared vs per-sample
#    layout: time, peak CUDA memory, equal loss (bench_step.py --preset gpt-b);
# 2. KV-cache sampling throughput with CFG at batch 64 (bench_generate.py);
# 3. a short `vapi train` run end to end with train.precision=bf16 on GPT-B-sized random models and procedural data;
# 4. with two or more GPUs: the same run as a 2-process NCCL DDP job, then resumed.
# Every section prints its own lines; the script stops at the first failure.
# DRY=1 runs the same sections on the CPU at toy sizes (checks the script itself, measures nothing of interest).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$OUT"
PY=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
rm -rf "$OUT/run" "$OUT/ddp" "$OUT/gpt" "$OUT/vq" "$OUT/images"
if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu PREC=fp32 SIZE=(--dim 64 --layers 2 --heads 2 --vocab 256) GRID=4 IMG=64 VOCAB=256 DIM=64 LAYERS=2 BATCH=4
  BENCH=(--dim 64 --layers 2 --heads 2 --vocab 256 --grid 16 --images 2 --micro-batch 8 --repeats 1)
else
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPU(s)')"
  DEV=cuda PREC=bf16 SIZE=(--dim 768 --layers 12 --heads 12 --vocab 16384) GRID=16 IMG=256 VOCAB=16384 DIM=768
  LAYERS=12 BATCH=64 BENCH=(--preset gpt-b --images 16 --micro-batch 32 --repeats 3)
fi

echo "== 1. update layouts, GPT-B size, bf16 =="
(cd benchmarks && timeout 240 "../$PY" bench_step.py "${BENCH[@]}" --device $DEV --precision $PREC)

echo "== 2. KV-cache sampling with CFG, batch 64 =="
(cd benchmarks && timeout 120 "../$PY" bench_generate.py "${SIZE[@]}" --tokens $((GRID * GRID)) --batch $BATCH \
    --cfg 4 --device $DEV --repeats 2)

echo "== 3. vapi train, bf16 =="
"$PY" - "$OUT" $DIM $LAYERS $VOCAB $GRID $IMG <<'PYEOF'
import sys
from pathlib import Path
import torch
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.models.weights_io import save_pretrained
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
out = Path(sys.argv[1])
dim, layers, vocab, grid, image = map(int, sys.argv[2:])
torch.manual_seed(0)
gpt = LlamaGenGPT(GPTConfig(dim=dim, n_layer=layers, n_head=dim // 64, vocab_size=vocab, block_size=grid * grid,
                            num_classes=10))
torch.nn.init.normal_(gpt.output.weight, std=0.02)
save_pretrained(gpt, out / "gpt")
save_pretrained(VQModel(VQConfig(codebook_size=vocab)), out / "vq")  # VQ-16: image / 16 = grid
save_as_image_folder(ProceduralShapes(64, image_size=image, seed=0), out / "images")
print("wrote", out)
PYEOF
ARGS=(model.gpt="$OUT/gpt" model.vq="$OUT/vq" model.image_size=$IMG data.path="$OUT/images" reward.lpips=0
      train.precision=$PREC train.device=$DEV train.per_device_batch_size=8 train.micro_batch_size=32
      objective.policy_mode=eval train.max_steps=6 train.save_steps=3 train.progress=false)
timeout 240 "$PY" -m vapi train "${ARGS[@]}" train.output_dir="$OUT/run"
tail -n 2 "$OUT/run/metrics.jsonl"

if [ "$DEV" = cuda ] && [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  echo "== 4. 2-process NCCL DDP =="
  timeout 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m vapi train "${ARGS[@]}" \
      train.parallel=ddp train.output_dir="$OUT/ddp"
  tail -n 1 "$OUT/ddp/metrics.jsonl"
else
  echo "== 4. skipped: fewer than two GPUs =="
fi
echo "gpu_check: done"
