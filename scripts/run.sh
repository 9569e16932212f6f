#!/usr/bin/env bash
# The main job: install what building and running the generator needs, build it (Release), and
# generate text.
#   scripts/run.sh                       the model shipped in this repository (below)
#   scripts/run.sh ARGS                  the same with extra bitnet-generate flags (e.g. -n 64)
#   scripts/run.sh -m MODEL.gguf [ARGS]  any supported GGUF; ARGS go to bitnet-generate
# The shipped model is bitllama-3M (models/bitllama-3M: a real trained ternary TinyStories
# model, dim 256, 8 layers, 512-token vocab, converted to I2_S by bitnet-convert; MIT, see its
# LICENSE and PROVENANCE.md), run greedily from "Once upon a time". It needs nothing outside
# the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh run
build=${BITNET_BUILD_DIR:-$root/build-release}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBITNET_BUILD_TESTS=OFF -DBITNET_BUILD_BENCHMARKS=OFF \
  -DBITNET_BUILD_TOOLS=OFF -DBITNET_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target bitnet-generate >/dev/null
gen="$build/examples/bitnet-generate/bitnet-generate"
if [ "${1:-}" = "-m" ]; then
  exec "$gen" "$@"
fi
model="$root/models/bitllama-3M/bitllama-3M-i2_s.gguf"
echo "model: bitllama-3M (models/bitllama-3M, a real trained ternary TinyStories model), I2_S, greedy" >&2
exec "$gen" -m "$model" -p "Once upon a time" -n 200 --temp 0 "$@"
