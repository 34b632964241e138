#!/usr/bin/env bash
# The checks CI cannot run: train.py's CUDA paths on one GPU, by hand.
#
#     bash scripts/gpu_check.sh [WORKDIR]      # from the repo root, project dependencies installed
#
# On 3,000 generated photos: the article MLP in bf16-mixed (train, test, resume with
# --ckpt_path last), shift_mlp in fp32 (random resized crops on the GPU), the TensorBoard
# content (histograms through the GPU path) and predict.py on the GPU-trained checkpoint.
# A step that fails prints its exit status and the end of its log; the script goes on.
set -u
export PYTHONUNBUFFERED=1
W=${1:-$(mktemp -d)}
mkdir -p "$W"
nvidia-smi -L
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, torch.cuda.get_device_name())"
P=$(python3 -c "from tests.image_factory import make_layout; print(make_layout('$W/photos', 'split_folders', n_per_class=1500))")
RUNS=$W/runs-$(date +%s)
COMMON=(--data.root "$P" --data.cache_dir "$W/cache" --trainer.accelerator gpu --trainer.devices 1
        --trainer.logger.init_args.save_dir "$RUNS")

step() {  # step NAME LOG COMMAND...: run it, print its exit status and the end of its log
    local name=$1 log=$2; shift 2
    echo "== $name"
    "$@" > "$log" 2>&1
    echo "exit $?"
    tail -8 "$log"
}

step "1. mlp_article, bf16-mixed, 4 epochs" "$W/1.log" \
    python3 train.py --config configs/mlp_article.yaml "${COMMON[@]}" --trainer.precision bf16-mixed --trainer.max_epochs 4
step "2. resume it to 6 epochs (--ckpt_path last)" "$W/2.log" \
    python3 train.py --config configs/mlp_article.yaml "${COMMON[@]}" --trainer.precision bf16-mixed --trainer.max_epochs 6 --ckpt_path last
step "3. shift_mlp, crops on the GPU, fp32, 2 epochs" "$W/3.log" \
    python3 train.py --config configs/shift_mlp.yaml "${COMMON[@]}" --trainer.precision 32-true --trainer.max_epochs 2

echo "== 4. TensorBoard content of the mlp_article run"
python3 - "$RUNS/mlp_article/version_0" <<'PY'
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1], size_guidance={"histograms": 0, "scalars": 0, "images": 0})
events.Reload()
print({kind: len(tags) for kind, tags in events.Tags().items() if isinstance(tags, list)})
for tag in ("layer1/grad_norm", "layer1/dead_fraction", "train/loss_epoch", "val/acc"):
    print(tag, [round(event.value, 5) for event in events.Scalars(tag)][:8])
PY

step "5. predict.py (CPU) with the GPU-trained checkpoint" "$W/5.log" \
    python3 predict.py --ckpt "$RUNS/mlp_article/version_0/checkpoints/best.ckpt" "$P/validation" --output "$W/predictions.csv"
echo "predictions: $(($(wc -l < "$W/predictions.csv") - 1))"
