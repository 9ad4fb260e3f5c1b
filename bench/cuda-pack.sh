#!/usr/bin/env bash
# Packs what the CUDA verification needs on the GPU machine, which has no network and receives only the
# working tree plus at most 64 MiB of ignored paths per `run` call: node itself, koffi, the ggml CPU
# libraries, libggml-cuda.so (159 MB, its GPU code already compressed), dist/, build/native and
# bench/cuda-check.mjs. One xz stream, split into parts under .cuda-payload/ (ignored through
# .git/info/exclude) with a manifest of sha256 sums. bench/cuda-check.sh collects them there.
#
# By default libggml-cuda.so is first trimmed to the compute_90 PTX that Hopper (H100, H200) runs
# (bench/cuda-trim-fatbin.mjs: 129 → 20 MB of GPU code), so that everything fits one part, one call.
# FULL=1 packs the library untouched instead: 3 parts, 3 calls (use it if the trimmed one fails to load).
# The trimmed PTX is declared as ISA $PTX_ISA (default 9.0, what a CUDA 13.0 / 580.x driver compiles; the
# shipped 9.1 is refused there); PTX_ISA= keeps it as shipped.
#
#   npm run build && bash bench/cuda-pack.sh        # then make the `run` call(s) it prints
set -euo pipefail
cd "$(dirname "$0")/.."
PART_MIB=${PART_MIB:-56}
out=.cuda-payload
cuda_lib=node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so
[ -f dist/ggml/backend.js ] || { echo "cuda-pack: no dist/: run \`npm run build\` first" >&2; exit 1; }
[ -f "$cuda_lib" ] || { echo "cuda-pack: $cuda_lib is not installed" >&2; exit 1; }
grep -qxF "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >>.git/info/exclude

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/bench"
cp "$(command -v node)" "$stage/bin/node"
cp bench/cuda-check.mjs "$stage/bench/"
# only what the check imports at run time: koffi (and its linux-x64 binary), the ggml libraries
cp -r --parents \
  dist build/native \
  node_modules/koffi \
  node_modules/@koromix/koffi-linux-x64 \
  node_modules/@node-llama-cpp/linux-x64/package.json node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-*.so \
  node_modules/@node-llama-cpp/linux-x64-cuda/package.json \
  "$stage/"
mkdir -p "$stage/$(dirname "$cuda_lib")"
if [ "${FULL:-0}" = 1 ]; then
  cp "$cuda_lib" "$stage/$cuda_lib"
  echo "libggml-cuda.so as shipped (all architectures)" >"$stage/payload.txt"
else
  isa=${PTX_ISA-9.0}
  node bench/cuda-trim-fatbin.mjs "$cuda_lib" "$stage/$cuda_lib" ptx:90 ${isa:+--ptx-isa "$isa"}
  echo "libggml-cuda.so trimmed to compute_90 PTX (Hopper)${isa:+, declared PTX ISA $isa,} by bench/cuda-trim-fatbin.mjs" >"$stage/payload.txt"
fi
# the CUDA 12 fallback build adds 374 MB: only with CUDA12=1 (for a driver older than CUDA 13's)
if [ "${CUDA12:-0}" = 1 ]; then
  cp -r --parents node_modules/@node-llama-cpp/linux-x64-cuda-ext/package.json \
    node_modules/@node-llama-cpp/linux-x64-cuda-ext/bins "$stage/"
fi

rm -rf "$out"
mkdir -p "$out"
echo "cuda-pack: compressing $(du -sh "$stage" | cut -f1) (xz, a few minutes on a busy machine)…" >&2
tar -C "$stage" -cf - . | nice xz -6 -T1 | split -b "${PART_MIB}m" -d -a 2 - "$out/part-"
(cd "$out" && sha256sum part-* >manifest)
n=$(wc -l <"$out/manifest")
echo "cuda-pack: $n part(s) of at most $PART_MIB MiB in $out/ ($(du -sh "$out" | cut -f1)):" >&2
cat "$out/manifest" >&2
echo >&2
[ "$n" -gt 1 ] && echo "On the GPU machine, make these run calls back to back (a machine stays warm 30 s after a call):" >&2
[ "$n" -eq 1 ] && echo "On the GPU machine, one run call:" >&2
for p in "$out"/part-*; do
  echo "  run(command=\"bash bench/cuda-check.sh\", carry=[\"$out/manifest\", \"$p\"], timeout_s=600)" >&2
done
[ "$n" -gt 1 ] && echo "The last call finds every part, unpacks and runs the check; earlier ones only collect." >&2
exit 0
