#!/usr/bin/env bash
# The main job: install what is missing, build Release, and generate text.
#   scripts/run.sh                       embedded default (see below)
#   scripts/run.sh -m MODEL.gguf [ARGS]  any BitNet GGUF; ARGS go to bitnet-generate
# Embedded default: the real trained ternary TinyStories model bitllama-3M
# (dim 256, 8 layers, 512-token vocab) from ../shared/data/bitllama2c, converted
# to an I2_S GGUF with bitnet-convert, run greedily from "Once upon a time".
# Without ../shared it falls back to a small synthetic model with random ternary
# weights in the 2B4T layer shapes (it shows speed, its text is noise).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh
build=${BITNET_BUILD_DIR:-$root/build-release}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bitnet-generate bitnet-convert >/dev/null
gen="$build/examples/bitnet-generate/bitnet-generate"
conv="$build/tools/bitnet-convert"
if [ "${1:-}" = "-m" ]; then
  exec "$gen" "$@"
fi
shared=${BITNET_SHARED_DIR:-$root/../shared}
ckpt="$shared/data/bitllama2c/bitllama-3M-ternary.bin"
if [ -f "$ckpt" ]; then
  model="$build/bitllama-3M-i2_s.gguf"
  [ -f "$model" ] || "$conv" from-llama2c "$ckpt" "$shared/data/bitllama2c/tok512.model" --type i2_s -o "$model" >&2
  echo "embedded default: bitllama-3M (real trained ternary TinyStories model), I2_S, greedy" >&2
  exec "$gen" -m "$model" -p "Once upon a time" -n 200 --temp 0 "$@"
fi
model="$build/synth-2b4t-4layers.gguf"
[ -f "$model" ] || "$conv" synth --shape 2b4t --layers 4 --type i2_s --head-type q6_k --seed 1 -o "$model" >&2
echo "embedded default: ../shared not found; synthetic 2B4T-shaped model (4 layers, random weights: the text is noise)" >&2
exec "$gen" -m "$model" -p "Hello" -n 64 "$@"
