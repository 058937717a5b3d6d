#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: the Python binding's SPF benchmark of docs/PERFORMANCE.md: the
# binding vs pyspf on the rfc7208 suite (same DNS data, same process,
# interleaved rounds, medians), and the per-call overhead of the binding.
# usage: bench/python/run.sh [BUILD_DIR]   (REPEAT=7 by default)
# Build first, in Release, with the binding and the C benchmark:
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMXGW_BUILD_PYTHON=ON \
#         -DPython3_EXECUTABLE=/usr/bin/python3
#   cmake --build build -j2 --target mxgw_python bench_spf
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
pkg=$build/bindings/python/pkg
[ -d "$pkg/mxgw" ] || { echo "run.sh: $pkg/mxgw not built (see the header)" >&2; exit 1; }
cbench=()
[ -x "$build/bench/spf/bench_spf" ] && cbench=(--c-bench "$build/bench/spf/bench_spf")
PYTHONPATH=$pkg exec /usr/bin/python3 "$here/bench_spf_binding.py" \
  "$root/tests/spf/rfc7208-tests.yml" --repeat "${REPEAT:-7}" "${cbench[@]}"
