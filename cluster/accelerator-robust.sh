#!/usr/bin/env bash
# The robust recipe on a lent accelerator machine (Keras on JAX; no TensorFlow there), in one call.
#
# Here, first (README "Training on an accelerator"):
#   python -m fer_keras.portable pack --data fer2013=../shared/data/fer2013 --classes six --out .gpu/fer2013-six.npz
#   and the keras, namex and optree wheels in .whl/ (pip download, as the device tool's README says).
# There, from the repository root:
#   bash cluster/accelerator-robust.sh OUT_DIR [DEADLINE_S]
# It prints the machine, times the robust feed old against new on the packed faces (16 and 8 threads), then
# trains two robust fine-tunes of the shipped six-class model side by side, each ending by DEADLINE_S seconds
# (default 420) and each writing its validation-chosen weights to OUT_DIR as it goes (NAME.json + parts):
#   ra: --lr 0.003 (the earlier accelerator run's rate), rb: --lr 0.01 --seed 1 (the accelerator recipe's rate).
# Back here: python -m fer_keras.portable unpack OUT_DIR/ra.json --out runs/gpu/ra.keras, then evaluate on
# validation, choose, test once (RESULTS.md "Robust default models").
# PACK (default .gpu/fer2013-six.npz; several shards separated by spaces), INIT (default gimefive-fer2013) and
# EXTRA (more flags for both runs, e.g. EXTRA=--soft-labels for FER+ vote distributions) change what is trained.
# FER+ (issue 25's seven-class default), whose pack with the shipped weights is over one call's 64 MiB: here,
#   python -m fer_keras.portable pack --data ferplus=../shared/data/ferplus --classes seven \
#       --out .gpu/ferplus-seven.npz --shard-megabytes 30      # -> ferplus-seven-0.npz (31.5 MB), -1.npz (17.0 MB)
# and fer_keras/weights/gimefive-fer2013.* moved out of the tree for both calls (not committed); call 1 carries
# .gpu/ferplus-seven-0.npz and runs `mkdir -p runs/pack && cp .gpu/ferplus-seven-0.npz runs/pack/` (runs/ is
# ignored, so the copy stays on the warm machine); call 2, to the same warm machine, carries .gpu/ferplus-seven-1.npz
# and .whl and runs
#   PACK='runs/pack/ferplus-seven-0.npz .gpu/ferplus-seven-1.npz' INIT=gimefive-ferplus EXTRA=--soft-labels \
#       bash cluster/accelerator-robust.sh $OUT 420
set -uo pipefail
OUT=${1:?usage: bash cluster/accelerator-robust.sh OUT_DIR [DEADLINE_S]}
DEADLINE=${2:-420}
PACK=${PACK:-.gpu/fer2013-six.npz}
INIT=${INIT:-gimefive-fer2013}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
if ! python3 -c "import keras" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then  # no Keras there: the carried wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl \
        || { echo "error: the wheels in .whl/ did not install" >&2; exit 1; }
    export PYTHONPATH=$PWD/.site:${PYTHONPATH:-}
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 PYTHONUNBUFFERED=1
LOG="$OUT/run.log"
{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
    python3 -m benchmarks.robust_feed --pack "${PACK%% *}" --threads "$(nproc),$(( $(nproc) / 2 ))" --seconds 3 --rounds 1
} >> "$LOG" 2>&1
WORKERS=$(( $(nproc) / 2 ))
C="python3 -m fer_keras.portable train $PACK --out $OUT --init-from $INIT --augment flip,robust --shifted-validation
   --nesterov --precision mixed_bfloat16 --epochs 400 --deadline $DEADLINE --workers $WORKERS $EXTRA"
$C --name ra --lr 0.003 2>&1 | sed -u 's/^/[ra] /' >> "$LOG" &
$C --name rb --lr 0.01 --seed 1 2>&1 | sed -u 's/^/[rb] /' >> "$LOG" &
wait
grep -E "best val|error|Error" "$LOG" | tail -n 20
ls -la "$OUT"
