#!/usr/bin/env bash
# Rebuild the default models under assets/models from scratch: train each VAE and diffusion model
# with the presets in engine/presets (digits, shapes-vae + shapes, landscapes-vae + landscapes),
# then export each run to an fp16-weight ONNX bundle (every graph checked against PyTorch).
#
#   scripts/build_default_models.sh [RUNS_DIR]          train + export (needs the engine extra)
#   scripts/build_default_models.sh --train-only DIR    train only (e.g. on a GPU machine)
#   scripts/build_default_models.sh --export-only DIR   export runs trained elsewhere
#
# Time budgets (seconds of training per stage; unset = the preset's step count):
#   DIGITS_SECONDS, SHAPES_VAE_SECONDS, SHAPES_SECONDS, LANDSCAPES_VAE_SECONDS, LANDSCAPES_SECONDS
# Extra `diffusion-studio train` options per stage (e.g. a GPU's larger batch), same names with _ARGS:
#   SHAPES_ARGS="--batch 256 --lr 5e-4" ...
# The three chains run in parallel (one GPU is shared fine; on a CPU set PARALLEL=0).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=all
case "${1:-}" in
  --train-only) mode=train; shift ;;
  --export-only) mode=export; shift ;;
esac
RUNS=${1:-runs}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
mkdir -p "$RUNS"

train() {  # train PRESET OUT BUDGET_VAR [extra args]
  local preset=$1 out=$2 budget=${!3:-} extra_var=${3%_SECONDS}_ARGS; shift 3
  local args=("$preset" --out "$out" --no-progress)
  [ -n "$budget" ] && args+=(--max-seconds "$budget")
  read -r -a extra <<< "${!extra_var:-}"
  args+=("${extra[@]}")
  "$PY" -m desktop train "${args[@]}" "$@" > "$out.log" 2>&1 || { echo "training $preset failed; see $out.log" >&2; tail -20 "$out.log" >&2; return 1; }
  echo "trained $preset -> $out ($(tail -1 "$out/metrics.jsonl" 2>/dev/null))"
}

chain_digits()     { train digits "$RUNS/digits" DIGITS_SECONDS; }
chain_shapes()     { train shapes-vae "$RUNS/shapes-vae" SHAPES_VAE_SECONDS &&
                     train shapes "$RUNS/shapes" SHAPES_SECONDS --vae "$RUNS/shapes-vae"; }
chain_landscapes() { train landscapes-vae "$RUNS/landscapes-vae" LANDSCAPES_VAE_SECONDS &&
                     train landscapes "$RUNS/landscapes" LANDSCAPES_SECONDS --vae "$RUNS/landscapes-vae"; }

if [ "$mode" != export ]; then
  if [ "${PARALLEL:-1}" = 1 ]; then
    chain_digits & a=$!; chain_shapes & b=$!; chain_landscapes & c=$!
    status=0; for p in $a $b $c; do wait $p || status=1; done
    [ $status = 0 ] || exit 1
  else
    chain_digits; chain_shapes; chain_landscapes
  fi
fi

if [ "$mode" != train ]; then
  declare -A about=(
    [digits]="Handwritten digits 0-9 (16x16, grey): a class-conditional pixel DDPM trained on scikit-learn's real digits. Pick a class and generate."
    [shapes]="Coloured shapes on plain or textured grounds (64x64) from a text prompt such as 'a red star at the top left'; also inpaints."
    [landscapes]="Procedural landscapes (64x64) from a painted label map: sky, clouds, mountains, snow, water, sand, grass, trees, rock. Paint the map, then generate.")
  declare -A preview=([digits]="" [shapes]="--preview-decoder 1500" [landscapes]="--preview-decoder 1500")
  for name in digits shapes landscapes; do
    # shellcheck disable=SC2086  # the latent models' learned live preview (a few minutes each on a CPU)
    "$PY" -m desktop export "$RUNS/$name" "assets/models/$name" --fp16 --overwrite --name "$name" \
      --description "${about[$name]}" ${preview[$name]}
  done
fi
