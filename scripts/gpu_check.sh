#!/usr/bin/env bash
# The checks CI cannot run: train.py, predict.py and export on one CUDA GPU. A gate: one line
# per check, then "N passed, N failed"; the exit status is non-zero when any check failed.
#
#     bash scripts/gpu_check.sh [WORKDIR]      # from the repo root, project dependencies installed
#
# About ten minutes on one GPU, on 2,100 generated photos. Each check's whole output is in
# WORKDIR/logs/; a passed check prints its last line, a failed one the end of its log.
# The assertions are in scripts/gpu_check.py, one subcommand per check.
set -u
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
HELPER=scripts/gpu_check.py
W=${1:-$(mktemp -d)}
mkdir -p "$W/logs"
passed=0
failed=0

check() {  # check NAME COMMAND...: run COMMAND into its own log, print one line, count it
    local name=$1 log start status
    shift
    log="$W/logs/$((passed + failed + 1)).log"
    start=$SECONDS
    "$@" > "$log" 2>&1
    status=$?
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        echo "PASS  $name ($((SECONDS - start)) s): $(tail -n 1 "$log")"
    else
        failed=$((failed + 1))
        echo "FAIL  $name (exit $status, $log):"
        tail -n 8 "$log" | sed 's/^/      /'
    fi
}

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit  # with the status of the test above
}

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" > "$W/logs/0.log" 2>&1; then
    echo "FAIL  no CUDA GPU: torch.cuda.is_available() is not True for $PYTHON ($W/logs/0.log); nothing checked"
    failed=1
    finish
fi
nvidia-smi -L
"$PYTHON" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

P=$W/photos
COMMON=(--data.root "$P" --data.cache_dir "$W/cache" --trainer.accelerator gpu --trainer.devices 1)

train() {  # train NAME ARGS...: train.py into runs/NAME, its run folder runs/NAME/<config's name>/version_0
    local name=$1
    shift
    "$PYTHON" train.py "${COMMON[@]}" --trainer.logger.init_args.save_dir "$W/runs/$name" "$@"
}

run_folder() { echo "$W/runs/$1"/*/version_0; }

one_epoch() {  # one_epoch CONFIG: an epoch with a TensorBoard snapshot, then read the snapshots back
    train "$1" --config "configs/$1.yaml" --trainer.max_epochs 1 --insight.every_n_epochs 1 &&
        "$PYTHON" $HELPER tensorboard "$(run_folder "$1")" 1
}

fp16_clipped() {
    train fp16 --config configs/mlp_article.yaml --trainer.precision 16-mixed --trainer.gradient_clip_val 1.0 \
        --trainer.max_epochs 2 --insight.every_n_epochs 1 &&
        "$PYTHON" $HELPER tensorboard "$(run_folder fp16)" 2 --max-grad-norm 1000
}

resume() {  # mlp_article's one-epoch run, on to a second epoch from its last.ckpt
    local last
    last=$(run_folder mlp_article)/checkpoints/last.ckpt
    cp "$last" "$W/first-last.ckpt" &&
        train mlp_article --config configs/mlp_article.yaml --trainer.max_epochs 2 --ckpt_path "$last" &&
        "$PYTHON" $HELPER resumed "$W/first-last.ckpt" "$last"
}

predict_on_cpu() {  # CUDA_VISIBLE_DEVICES empty: predict.py sees no GPU, as on a laptop
    local best
    best=$(run_folder mlp_article)/checkpoints/best.ckpt
    CUDA_VISIBLE_DEVICES="" "$PYTHON" predict.py --ckpt "$best" "$P/validation" --output "$W/predictions.csv" &&
        "$PYTHON" $HELPER predictions "$W/predictions.csv" "$best"
}

mixing() {
    train mix --config configs/quick.yaml --trainer.max_epochs 1 --insight.every_n_epochs 1 \
        --model.mixup_alpha 0.2 --model.cutmix_alpha 1.0 --model.tta_flip true &&
        "$PYTHON" $HELPER tensorboard "$(run_folder mix)" 1
}

check "photos: 2,100 generated" "$PYTHON" -c \
    "from tests.image_factory import make_layout; print(make_layout('$P', 'split_folders', n_per_class=700, size=(80, 64)))"
check "precision: capability, bf16 with and without emulation, the choice" "$PYTHON" $HELPER precision
# Every family; mlp_deep has BatchNorm, shift_mlp random crops (in the loader's workers).
for config in logreg mlp_article mlp_deep resmlp mixer shift_mlp; do
    check "$config: one epoch, TensorBoard snapshots" one_epoch "$config"
done
check "16-mixed with gradient clipping: unscaled gradient norms" fp16_clipped
check "resume on the GPU: mlp_article from 1 to 2 epochs" resume
check "a GPU checkpoint predicted on the CPU" predict_on_cpu
check "export of a GPU model: onnx, torchscript, safetensors" "$PYTHON" $HELPER export \
    "$(run_folder mlp_article)/checkpoints/best.ckpt" "$W/exports"
check "MixUp, CutMix and tta_flip on CUDA" mixing
check "synchronisations of an epoch, set_sync_debug_mode(\"warn\")" "$PYTHON" $HELPER syncs \
    --config configs/quick.yaml "${COMMON[@]}" --trainer.logger.init_args.save_dir "$W/runs/syncs"
check "num_workers 0 against null (chosen per device)" "$PYTHON" $HELPER workers \
    --config configs/quick.yaml "${COMMON[@]}" --trainer.logger.init_args.save_dir "$W/runs/workers"
finish
