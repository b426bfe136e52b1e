#!/usr/bin/env bash
# SDXL-Turbo WebGPU benchmark bundle (made by `npm run gpu:bundle`, tools/gpu-bundle.mjs).
# Needs no npm, no Node and no internet: Node, Dawn (dawn.node), the Vulkan loader and the
# fixtures travel in this folder. Usage:
#
#   bash run.sh [--small] [--skip-kernels] [--skip-pipeline] [--skip-torch]
#               [--vulkan-loader auto|bundled|system] [--time-limit S] OUTDIR
#   bash run.sh --find-icd      # print the Vulkan driver (ICD) run.sh would use, and exit
#   bash run.sh --check-files   # check the bundle's files against MANIFEST.txt, and exit
#
# Steps: check every file against MANIFEST.txt (one left behind by a device-tool call is named),
# unpack into a private temp folder (nothing is installed into /), find the Vulkan driver
# (NVIDIA first, then AMD, else whatever is installed, e.g. lavapipe: said so), print the WebGPU
# adapter, sdxl-turbo tune (512², f16), bench-kernels (heuristic and tuned variants), the
# subgroup-matrix matmul's self-check and timings (bench-subgroup-matrix), the PyTorch
# baseline where python3 has torch with CUDA, bench-pipeline --synthetic (512², 1 step, f16;
# last, as the longest), a summary.
# --time-limit S: the whole run ends within S seconds (a device-tool call's limit): each step is
# stopped where it would eat the time kept for the steps after it, and one with under 20 s left is
# skipped; the summary comes last either way.
# OUTDIR gets at most 8 files (the device tool brings back 8). --small: the cheapest shape of
# each kernel variant, the tiny architecture with synthetic weights at 64², the PyTorch
# baseline's small variant: about a minute on lavapipe.
set -uo pipefail

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIME_LIMIT=0 SMALL=0 SKIP_KERNELS=0 SKIP_PIPELINE=0 SKIP_TORCH=0 LOADER=auto FIND_ICD=0 CHECK_FILES=0 OUTDIR=
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1 ;;
    --skip-kernels) SKIP_KERNELS=1 ;;
    --skip-pipeline) SKIP_PIPELINE=1 ;;
    --skip-torch) SKIP_TORCH=1 ;;
    --vulkan-loader) LOADER=${2:-}; shift ;;
    --find-icd) FIND_ICD=1 ;;
    --check-files) CHECK_FILES=1 ;;
    --time-limit) TIME_LIMIT=${2:-}; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$OUTDIR" ] || { echo "run.sh: one OUTDIR only" >&2; exit 2; }; OUTDIR=$1 ;;
  esac
  shift
done
case "$TIME_LIMIT" in ''|*[!0-9]*) echo "run.sh: --time-limit must be a whole number of seconds" >&2; exit 2 ;; esac
case "$LOADER" in auto|bundled|system) ;; *) echo "run.sh: --vulkan-loader must be auto, bundled or system" >&2; exit 2 ;; esac

say() { printf '\n=== %s\n' "$*"; }

# ---- the Vulkan driver (ICD) -------------------------------------------------------------------
# Candidates: every *.json in the standard ICD folders (SDXL_ICD_DIRS, colon-separated, replaces
# the list). Mesa installs radeon/intel ICD files whether or not such a GPU is there, so a
# vendor's driver counts only where its hardware is seen (SDXL_GPU_VENDORS, e.g. "nvidia amd",
# replaces that check; both variables are for tests). Preference: NVIDIA, AMD, then lavapipe,
# then anything else. Prints "KIND<TAB>FILE".
icd_kind() { # FILE → nvidia | amd | lavapipe | other
  local f=$1 name lib
  name=$(basename "$f")
  lib=$(grep -o '"library_path"[^,}]*' "$f" 2>/dev/null | head -1)
  case "$name $lib" in
    *nvidia*) echo nvidia ;;
    *radeon*|*amd*|*RADV*|*radv*) echo amd ;;
    *lvp*|*lavapipe*) echo lavapipe ;;
    *) echo other ;;
  esac
}
gpu_vendors() {
  if [ -n "${SDXL_GPU_VENDORS+set}" ]; then echo "$SDXL_GPU_VENDORS"; return; fi
  local v=
  if [ -e /dev/nvidiactl ] || [ -e /dev/nvidia0 ] || [ -d /proc/driver/nvidia ] || nvidia-smi -L >/dev/null 2>&1; then v="$v nvidia"; fi
  if grep -qs 0x1002 /sys/class/drm/card*/device/vendor; then v="$v amd"; fi
  echo "$v"
}
find_icd() {
  local dirs=${SDXL_ICD_DIRS:-/usr/local/nvidia/share/vulkan/icd.d:/etc/vulkan/icd.d:/usr/share/vulkan/icd.d:/usr/local/share/vulkan/icd.d:/usr/local/nvidia/etc/vulkan/icd.d}
  local vendors want d f
  vendors=" $(gpu_vendors) "
  for want in nvidia amd lavapipe other; do
    case "$want" in nvidia|amd) case "$vendors" in *" $want "*) ;; *) continue ;; esac ;; esac
    local IFS=:
    for d in $dirs; do
      [ -d "$d" ] || continue
      for f in "$d"/*.json; do
        [ -f "$f" ] || continue
        if [ "$(icd_kind "$f")" = "$want" ]; then printf '%s\t%s\n' "$want" "$f"; return 0; fi
      done
    done
  done
  return 1
}

if [ "$FIND_ICD" = 1 ]; then find_icd || { echo "none"; exit 1; }; exit 0; fi

# ---- the bundle's files --------------------------------------------------------------------------
# The device tool carries the bundle in two calls (BENCHMARKS.md, "On any Linux GPU box"): a file
# the machine lost in between, or one cut short, is named here instead of failing later.
sha256_of() { # FILE
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; fi
}
check_files() {
  [ -f "$BUNDLE/MANIFEST.txt" ] || { echo "run.sh: $BUNDLE/MANIFEST.txt is missing: carry the whole bundle (npm run gpu:bundle prints what)" >&2; return 1; }
  local sum size rel bad=0 n=0
  while read -r sum size rel; do
    n=$((n + 1))
    if [ ! -f "$BUNDLE/$rel" ]; then echo "run.sh: $rel is missing from $BUNDLE (MANIFEST.txt lists it): carry it too" >&2; bad=1
    elif [ "$(sha256_of "$BUNDLE/$rel")" != "$sum" ]; then echo "run.sh: $rel is not the file MANIFEST.txt lists (sha256 differs; $(wc -c < "$BUNDLE/$rel") bytes, $size expected)" >&2; bad=1
    fi
  done < <(grep -E '^[0-9a-f]{64}  ' "$BUNDLE/MANIFEST.txt")
  [ "$n" -gt 0 ] || { echo "run.sh: MANIFEST.txt lists no files" >&2; return 1; }
  [ "$bad" = 0 ] && echo "bundle: the $n files of MANIFEST.txt are all here and intact"
}
if [ "$CHECK_FILES" = 1 ]; then check_files; exit $?; fi
[ -n "$OUTDIR" ] || { echo "usage: bash run.sh [--small] OUTDIR (--help)" >&2; exit 2; }
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || exit 2

say "machine"
echo "bundle: $BUNDLE"
check_files || exit 1
echo "outdir: $OUTDIR"
echo "$(uname -srm); $(nproc 2>/dev/null || echo ?) CPUs; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ "$(uname -m)" != x86_64 ]; then echo "run.sh: this bundle holds x86-64 Linux binaries; this machine is $(uname -m)" >&2; exit 1; fi
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null

# ---- unpack ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sdxl-gpu-bundle.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
unxz_to() { # SRC.xz DEST: xz if there, else Python's lzma
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
untar_xz() { # SRC.tar.xz DIR
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" | tar -x -C "$2"
  else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi
}
undeb() { # DEB DIR: dpkg-deb if there, else ar + tar in Python (never into /)
  if command -v dpkg-deb >/dev/null 2>&1; then dpkg-deb -x "$1" "$2"; return; fi
  python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'!<arch>\n', 'not a .deb'
pos = 8
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip('/'), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    if name.startswith('data.tar'):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
    pos += 60 + size + (size & 1)
PY
}
mkdir -p "$WORK/bin" "$WORK/js" "$WORK/vulkan"
# Node comes in parts (node.xz.1, …: see tools/gpu-bundle.mjs), all checked above.
cat "$BUNDLE"/node.xz.[1-9] > "$WORK/node.xz" && unxz_to "$WORK/node.xz" "$WORK/bin/node" && chmod 755 "$WORK/bin/node" && rm "$WORK/node.xz" || { echo "run.sh: could not unpack node" >&2; exit 1; }
unxz_to "$BUNDLE/dawn.node.xz" "$WORK/js/dawn.node" || { echo "run.sh: could not unpack dawn.node" >&2; exit 1; }
cp "$BUNDLE"/js/*.mjs "$WORK/js/"
untar_xz "$BUNDLE/fixtures.tar.xz" "$WORK" || { echo "run.sh: could not unpack the fixtures" >&2; exit 1; }
NODE="$WORK/bin/node"
echo "node: $NODE $("$NODE" --version) (the bundle's own; PATH is not searched)"
# dawn.node needs glibc ≥ 2.34 and the libstdc++ of GCC ≥ 12 (GLIBCXX_3.4.30); node glibc ≥ 2.28.
if command -v ldd >/dev/null 2>&1; then
  for f in "$NODE" "$WORK/js/dawn.node"; do
    PROBLEMS=$(ldd "$f" 2>&1 | grep -i 'not found')
    [ -z "$PROBLEMS" ] || { echo "run.sh: $(basename "$f") cannot load here:"; echo "$PROBLEMS"; }
  done
fi

# ---- Vulkan: loader and driver ---------------------------------------------------------------
say "vulkan"
# Each deb goes into a prefix of its own, put on LD_LIBRARY_PATH only where the system lacks what
# it holds (auto), always (bundled) or never (system): libvulkan1 the loader, libglvnd0 the
# libGLdispatch that NVIDIA's libGLX_nvidia (its Vulkan driver) links against.
ldcache() { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; }
for deb in "$BUNDLE"/vulkan/*.deb; do
  pkg=$(basename "$deb"); pkg=${pkg%%_*}
  case "$pkg" in libvulkan1) lib=libvulkan.so.1 ;; libglvnd0) lib=libGLdispatch.so.0 ;; *) lib=$pkg ;; esac
  sys=$(ldcache | grep -m1 "$lib " | sed 's/.*=> //')
  if [ "$LOADER" = bundled ] || { [ "$LOADER" = auto ] && [ -z "$sys" ]; }; then
    mkdir -p "$WORK/vulkan/$pkg"
    undeb "$deb" "$WORK/vulkan/$pkg" || { echo "run.sh: could not unpack $deb" >&2; exit 1; }
    export LD_LIBRARY_PATH="$WORK/vulkan/$pkg/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "$lib: bundled ($(basename "$deb"), unpacked to $WORK/vulkan/$pkg, on LD_LIBRARY_PATH)"
  elif [ -n "$sys" ]; then
    echo "$lib: the system's ($sys)"
  else
    echo "$lib: none (--vulkan-loader system, and ldconfig lists none)"
  fi
done
if [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  ICD=${VK_DRIVER_FILES:-$VK_ICD_FILENAMES}
  echo "driver: ${ICD} (VK_DRIVER_FILES / VK_ICD_FILENAMES given)"
elif PICK=$(find_icd); then
  KIND=${PICK%%$'\t'*} ICD=${PICK#*$'\t'}
  export VK_DRIVER_FILES=$ICD VK_ICD_FILENAMES=$ICD
  case "$KIND" in
    nvidia|amd) echo "driver: $KIND, $ICD" ;;
    *) echo "driver: no NVIDIA or AMD Vulkan driver found; falling back to $KIND, $ICD" ;;
  esac
else
  ICD=
  echo "driver: no Vulkan ICD file found in the standard folders; leaving the choice to the loader"
fi
if [ -n "$ICD" ] && [ -f "$ICD" ]; then
  LIB=$(grep -o '"library_path"[^,}]*' "$ICD" | head -1 | sed 's/.*: *"\(.*\)"/\1/')
  echo "driver library: $LIB"
  LIBPATH=$LIB
  case "$LIB" in /*) ;; *) LLP=${LD_LIBRARY_PATH:-}; for d in ${LLP//:/ } /usr/local/nvidia/lib64; do [ -f "$d/$LIB" ] && { LIBPATH=$d/$LIB; break; }; done
    [ "$LIBPATH" = "$LIB" ] && LIBPATH=$(ldcache | grep -m1 "$LIB " | sed 's/.*=> //') ;; esac
  # The NVIDIA driver of containers often lives outside the linker's cache.
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$d" ] && case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d" ;; esac
  done
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
if [ -n "${LIBPATH:-}" ] && [ -f "$LIBPATH" ]; then
  MISSING=$(ldd "$LIBPATH" 2>&1 | grep 'not found')
  if [ -n "$MISSING" ]; then echo "driver library $LIBPATH misses:"; echo "$MISSING"; else echo "driver library $LIBPATH: every dependency resolves"; fi
elif [ -n "${LIB:-}" ]; then
  echo "driver library $LIB: not found on LD_LIBRARY_PATH or in the linker cache (the loader may still find it)"
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$WORK}

say "adapter"
cd "$WORK" || exit 1
ADAPTER_OK=1
if ! "$NODE" js/gpu-info.mjs --json "$WORK/gpu-info.json"; then
  ADAPTER_OK=0
  echo "run.sh: Dawn found no adapter. Check the driver above; on NVIDIA boxes the Vulkan ICD needs" >&2
  echo "  libGLX_nvidia.so.0 (or libEGL_nvidia) and its dependencies resolvable; try VK_LOADER_DEBUG=error,warn." >&2
fi

STATUS=0
# Seconds kept for what comes after each step under --time-limit: the steps after it at their
# least, and the summary.
declare -A RESERVE=([tune]=300 [bench-kernels]=240 [subgroup-matrix]=200 [torch-baseline]=150 [bench-pipeline]=20)
# The --time-limit for a tool of step NAME that stops by itself: the step's allowance less 30 s.
own_limit() { local s=$((TIME_LIMIT - SECONDS - ${RESERVE[$1]} - 30)); echo $((s > 0 ? s : 1)); }
run_step() { # NAME CMD...: runs (within --time-limit, less the step's reserve), records failure, continues
  local name=$1; shift
  say "$name"
  local t0=$SECONDS
  local bound=()
  if [ "$TIME_LIMIT" -gt 0 ]; then
    local left=$((TIME_LIMIT - SECONDS - ${RESERVE[$name]:-20}))
    if [ "$left" -lt 20 ]; then
      echo "[$name: SKIPPED: --time-limit $TIME_LIMIT leaves $left s for it]"
      STATUS=1
      return
    fi
    bound=(timeout -k 10 "$left")
    echo "(at most $left s: --time-limit $TIME_LIMIT)"
  fi
  "${bound[@]}" "$@"
  local rc=$?
  echo "[$name: exit $rc after $((SECONDS - t0)) s]"
  [ $rc -eq 0 ] || STATUS=1
}

if [ "$ADAPTER_OK" = 1 ]; then
  # ---- tune: every kernel variant of the benchmarked run's calls, measured on this GPU --------
  # Its table (printed here) is kept in WORK, not OUTDIR (8 files at most); bench-pipeline below
  # reads it, so the pipeline runs the tuned variants; bench-kernels --tune shows both per shape.
  say "tune"
  export SDXL_TURBO_TUNING_DIR="$WORK/tuning"
  if [ "$SMALL" = 1 ]; then TUNE_ARGS=(--model test/fixtures/tiny-sdxl-layout --width 64 --height 64 --reps 2 --budget 0.5); else TUNE_ARGS=(--model test/fixtures/sdxl-turbo-layout --width 512 --height 512); fi
  # Under --time-limit it starts no call in its last 30 s and stores what it measured.
  [ "$TIME_LIMIT" -gt 0 ] && TUNE_ARGS+=(--time-limit "$(own_limit tune)")
  run_step tune "$NODE" --enable-source-maps js/sdxl-turbo.mjs tune "${TUNE_ARGS[@]}" --dtype f16

  # ---- bench-kernels -------------------------------------------------------------------------
  if [ "$SKIP_KERNELS" = 0 ]; then
    if [ "$SMALL" = 1 ]; then KARGS=(--small --budget 3 --tune); else KARGS=(--reps 20 --budget 3 --tune); fi
    # Under --time-limit it starts no case in its last 30 s, so it writes what it measured rather
    # than being stopped with nothing written.
    [ "$TIME_LIMIT" -gt 0 ] && KARGS+=(--time-limit "$(own_limit bench-kernels)")
    run_step bench-kernels "$NODE" --enable-source-maps js/bench-kernels.mjs "${KARGS[@]}" --json "$OUTDIR/bench-kernels.json" --markdown "$OUTDIR/bench-kernels.md"
    # The tensor-core matmul: its start-up self-check on this GPU, then its timings against the
    # tiled kernel (where the self-check passed; "off" and why, where not).
    SARGS=()
    [ "$SMALL" = 1 ] && SARGS=(--small)
    run_step subgroup-matrix "$NODE" --enable-source-maps js/bench-subgroup-matrix.mjs "${SARGS[@]}" --markdown "$OUTDIR/subgroup-matrix.md"
  fi

else
  STATUS=1
  echo "run.sh: no adapter: skipping tune, bench-kernels and bench-pipeline"
fi

# ---- PyTorch baseline ----------------------------------------------------------------------------
say "torch-baseline"
if [ "$SKIP_TORCH" = 1 ]; then
  echo "PyTorch baseline: SKIPPED (--skip-torch)"
elif ! command -v python3 >/dev/null 2>&1; then
  echo "PyTorch baseline: SKIPPED (no python3 on PATH)"
else
  TORCH_RC=0
  WHY=$(python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>&1) || TORCH_RC=$?
  if [ "$TORCH_RC" = 3 ]; then
    echo "PyTorch baseline: SKIPPED (python3 has torch, but CUDA is not available)"
  elif [ "$TORCH_RC" != 0 ]; then
    echo "PyTorch baseline: SKIPPED (python3 cannot import torch: $(printf '%s' "$WHY" | tail -1))"
  else
    TARGS=()
    [ "$SMALL" = 1 ] && TARGS=(--small)
    run_step torch-baseline env PYTHONUNBUFFERED=1 python3 "$BUNDLE/torch_baseline.py" "${TARGS[@]}" --json "$OUTDIR/torch-baseline.json" --markdown "$OUTDIR/torch-baseline.md"
  fi
fi

# ---- bench-pipeline --synthetic (last: the longest; --time-limit bounds it) -------------------
if [ "$ADAPTER_OK" = 1 ]; then

  if [ "$SKIP_PIPELINE" = 0 ]; then
    if [ "$SMALL" = 1 ]; then
      PARGS=(--synthetic --layout test/fixtures/tiny-sdxl-layout --width 64 --height 64 --steps 1 --dtype f16 --runs 1)
    else
      PARGS=(--synthetic --width 512 --height 512 --steps 1 --dtype f16 --runs 5)
    fi
    # Loaded as a server or a page that generates many times loads it: the run once at load
    # (issue 9's first run ≤ 1.1 × warm is measured so; BENCHMARKS.md, "First run after load").
    PARGS+=(--warm-up)
    export OUT_MD="$OUTDIR/bench-pipeline.md"
    run_step bench-pipeline bash -c '"$@" 2>&1 | tee "$OUT_MD"; exit "${PIPESTATUS[0]}"' _ "$NODE" --enable-source-maps js/bench-pipeline.mjs "${PARGS[@]}" --json "$OUTDIR/bench-pipeline.json"
  fi
fi

# ---- summary (last) --------------------------------------------------------------------------
say "summary"
INFO=()
[ -f "$WORK/gpu-info.json" ] && INFO=(--info "$WORK/gpu-info.json")
"$NODE" js/bench-summary.mjs --dir "$OUTDIR" "${INFO[@]}" --out "$OUTDIR/summary.md" || STATUS=1
echo "results: $(cd "$OUTDIR" && ls | tr '\n' ' ')"
[ "$STATUS" = 0 ] || echo "run.sh: some step failed (see above)"
exit "$STATUS"
