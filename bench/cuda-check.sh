#!/usr/bin/env bash
# The GPU machine's half of the CUDA verification. Each `run` call carries .cuda-payload/manifest and one
# part made by bench/cuda-pack.sh (the 64 MiB limit per call); this script keeps the parts in /tmp
# (which lasts while the machine stays warm) and, once every part is there and its sha256 matches,
# unpacks node + koffi + the ggml libraries and runs bench/cuda-check.mjs on the GPU against the CPU.
# Arguments go to cuda-check.mjs (default: --cpu-bench). Results: $OUT/cuda-check-{tf32,f32}.{json,log}.
set -uo pipefail
cd "$(dirname "$0")/.."
store=/tmp/steerlm-cuda
mkdir -p "$store/parts"
if [ ! -f .cuda-payload/manifest ]; then
  echo "cuda-check: no .cuda-payload/manifest: run bench/cuda-pack.sh and carry its files" >&2
  exit 2
fi
cp .cuda-payload/manifest "$store/manifest"
for p in .cuda-payload/part-*; do [ -f "$p" ] && cp "$p" "$store/parts/"; done
missing=()
while read -r sum name; do
  echo "$sum  $store/parts/$name" | sha256sum -c --quiet >/dev/null 2>&1 || missing+=("$name")
done <"$store/manifest"
echo "cuda-check: $(($(wc -l <"$store/manifest") - ${#missing[@]}))/$(wc -l <"$store/manifest") payload parts here"
if [ ${#missing[@]} -gt 0 ]; then
  echo "cuda-check: still missing ${missing[*]}: carry them in the next run call (within 30 s)"
  exit 0
fi

root=$store/root
if [ ! -f "$root/.unpacked" ]; then
  rm -rf "$root" && mkdir -p "$root"
  if command -v xz >/dev/null; then
    cat "$store"/parts/part-* | xz -d | tar -C "$root" -xf - || exit 3
  else # python3's lzma reads xz too
    cat "$store"/parts/part-* | python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' |
      tar -C "$root" -xf - || exit 3
  fi
  touch "$root/.unpacked"
fi

# what the machine offers: driver, GPU, CUDA 13 runtime (cudart, cuBLAS) from the toolkit or pip's nvidia wheels
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
dirs=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13' -o -name 'libcudart.so.13' 2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
echo "cuda-check: CUDA 13 runtime folders: ${dirs:-none found}"
# the driver's libcuda.so.1: on the loader's path, or in the mounted driver folder
drv=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*/libcuda\.so\.1$' | head -1 | xargs -r dirname)
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -z "$drv" ] && [ -e "$d/libcuda.so.1" ] && drv=$d; done
echo "cuda-check: libcuda.so.1 in ${drv:-no folder found}"
export STEERLM_CUDA_LIB_DIR=$dirs
export LD_LIBRARY_PATH=$(printf '%s' "${drv}:${dirs}:${LD_LIBRARY_PATH:-}" | tr -s ':' | sed 's/^://; s/:$//')
export STEERLM_LOG=${STEERLM_LOG:-info}
out=${OUT:-$store}
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--cpu-bench)
# the GPU code is PTX on Hopper: the driver compiles it on first use; keep what it compiled for later runs
export CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
echo "cuda-check: payload: $(cat "$root/payload.txt" 2>/dev/null)"
echo "cuda-check: node $("$root/bin/node" -v), running bench/cuda-check.mjs ${args[*]}"
# f32 matrix products run as TF32 unless NVIDIA_TF32_OVERRIDE=0 (see cuda-check.mjs): one result file per mode
mode=$([ "${NVIDIA_TF32_OVERRIDE:-}" = 0 ] && echo f32 || echo tf32)
"$root/bin/node" "$root/bench/cuda-check.mjs" --json "$out/cuda-check-$mode.json" "${args[@]}" 2>&1 | tee "$out/cuda-check-$mode.log"
exit "${PIPESTATUS[0]}"
