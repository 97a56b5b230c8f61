#!/usr/bin/env bash
# Install the CUDA build of ONNX Runtime (onnxruntime-gpu) into a Python environment, as the ONLY
# ONNX Runtime wheel there, and check that the CUDA execution provider is really there.
#
#   scripts/install-onnxruntime-gpu.sh [--python PY] [--version V] [--with-cuda-libs] [--check] [--dry-run]
#
# Why a script: `onnxruntime` (CPU) and `onnxruntime-gpu` install the same `onnxruntime` package
# folder; whichever is installed last overwrites the other's files, and pip cannot tell that they
# conflict (fastembed#608). pymupdf 2.0 depends on `onnxruntime`, so `pip install -r
# requirements.txt` brings the CPU wheel back. This script removes every ONNX Runtime
# distribution, then installs onnxruntime-gpu alone; run it again after any `pip install -r`.
#
#   x86_64 Linux   onnxruntime-gpu from PyPI (CUDA 13 + cuDNN 9 builds since 1.2x)
#   aarch64 Linux  (DGX Spark / GB10, Grace-Hopper, Jetson Thor) onnxruntime-gpu from PyPI, which
#                  has aarch64 manylinux_2_34 wheels since 1.31.1 (glibc >= 2.34: Ubuntu 22.04+ / DGX
#                  OS). Only when PyPI offers none for this machine, or its install fails, the
#                  fallback: Microsoft's CUDA 13 aarch64 feed (built for sm 89/90a/120a/121a,
#                  microsoft/onnxruntime#27944; override with ORT_CUDA13_INDEX_URL; --feed forces it).
#   macOS          no CUDA: refused.
#
#   --python PY       the environment's interpreter (default: .venv/bin/python)
#   --version V       onnxruntime-gpu version (default: ORT_GPU_VERSION, else the version of the
#                     CPU pin in requirements.txt when the index has it, else the newest)
#   --with-cuda-libs  also install the CUDA/cuDNN runtime libraries as pip wheels (extras cuda,cudnn),
#                     for hosts that have the NVIDIA driver but no CUDA 13 toolkit (not needed in the
#                     nvidia/cuda base images)
#   --feed            aarch64: use the CUDA 13 feed instead of PyPI
#   --check           install nothing; report what is installed and whether CUDA is active
#   --dry-run         print what would be done
# Exit status: 0 installed (or --check passed); 1 failed; 3 installed but the CUDA provider does
# not load on this GPU (driver or libraries), so ONNX Runtime would run on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA13_AARCH64_INDEX=${ORT_CUDA13_INDEX_URL:-https://aiinfra.pkgs.visualstudio.com/PublicPackages/_packaging/onnxruntime-cuda-13/pypi/simple/}
python_bin=.venv/bin/python
version=${ORT_GPU_VERSION:-}
with_cuda_libs=0
force_feed=0
check_only=0
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python_bin=$2; shift ;;
    --version) version=$2; shift ;;
    --with-cuda-libs) with_cuda_libs=1 ;;
    --feed) force_feed=1 ;;
    --check) check_only=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 64 ;;
  esac
  shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
run() {
  printf '  $ %s\n' "$*" >&2
  [ "$dry_run" = 1 ] || "$@"
}

if [ ! -x "$python_bin" ] && ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "error: no Python at $python_bin (run scripts/setup.sh first, or pass --python)" >&2
  exit 1
fi

os=$(uname -s)
arch=$(uname -m)
if [ "$os" != Linux ]; then
  echo "error: onnxruntime-gpu (CUDA) exists for Linux and Windows only; on $os the CPU (or CoreML) provider is used." >&2
  exit 1
fi

# every distribution that ships the `onnxruntime` package folder
ort_dists() {
  "$python_bin" - <<'EOF'
import importlib.metadata as md
names = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-rocm",
         "onnxruntime-migraphx", "onnxruntime-trt-rtx", "onnxruntime-silicon", "onnxruntime-qnn", "ort-nightly",
         "ort-nightly-gpu"}
found = sorted({f"{d.metadata['Name'].lower()}=={d.version}" for d in md.distributions()
                if (d.metadata["Name"] or "").lower().replace("_", "-") in names})
print(" ".join(found))
EOF
}

# what ONNX Runtime offers, and whether a real CUDA session runs (only with a GPU to run on)
verify() {
  local dists
  dists=$(ort_dists)
  echo "installed ONNX Runtime distributions: ${dists:-none}"
  case "$dists" in
    *" "*) echo "error: more than one ONNX Runtime wheel is installed ($dists): they overwrite each other." >&2; return 1 ;;
    onnxruntime-gpu==*) ;;
    *) echo "error: onnxruntime-gpu is not installed (found: ${dists:-none})." >&2; return 1 ;;
  esac
  "$python_bin" - <<'EOF'
import glob
import shutil
import sys

import onnxruntime as ort

providers = ort.get_available_providers()
print(f"onnxruntime {ort.__version__}: available providers {', '.join(providers)}")
if "CUDAExecutionProvider" not in providers:
    print("error: this onnxruntime build has no CUDA execution provider", file=sys.stderr)
    sys.exit(1)
if shutil.which("nvidia-smi") is None:
    print("note: no nvidia-smi here (an image build?): the CUDA provider is in the build; not run on a GPU")
    sys.exit(0)
if hasattr(ort, "preload_dlls"):  # finds CUDA/cuDNN pip wheels (--with-cuda-libs) before the provider loads
    try:
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - a failed preload shows up in the session check below
        print(f"note: preload_dlls: {exc}")
models = sorted(glob.glob("data/models/*/model.onnx"))
if not models:
    print("note: no converted model to test a CUDA session with; run: python -m engine check --provider cuda later")
    sys.exit(0)
session = ort.InferenceSession(models[0], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
active = session.get_providers()[0]
if active != "CUDAExecutionProvider":
    print(f"WARNING: a session on {models[0]} runs on {active}, not CUDA: the CUDA provider did not load "
          "(driver, CUDA 13 runtime or cuDNN 9 missing: see the errors above; --with-cuda-libs installs the "
          "libraries as pip wheels)", file=sys.stderr)
    sys.exit(3)
print(f"CUDA is active: a session on {models[0]} runs on {active}")
EOF
}

if [ "$check_only" = 1 ]; then
  verify
  exit $?
fi

cpu_pin=$(sed -n 's/^onnxruntime==\([0-9.]*\).*/\1/p' requirements.txt | head -n 1)
feed_args=(--pre --index-url "$CUDA13_AARCH64_INDEX")
index_args=()
source_name=PyPI

# versions of onnxruntime-gpu an index offers for this machine's Python and platform, newest first
index_versions() {
  "$python_bin" -m pip index versions onnxruntime-gpu "$@" 2>/dev/null \
    | sed -n 's/^Available versions: //p' | tr -d ' ' | tr ',' ' ' || true
}

case "$arch" in
  x86_64|amd64) ;;
  aarch64|arm64)
    glibc=$(ldd --version 2>/dev/null | head -n 1 | grep -oE '[0-9]+\.[0-9]+$' || echo 0)
    if [ "$(printf '%s\n2.34\n' "$glibc" | sort -V | head -n 1)" != 2.34 ]; then
      echo "warning: glibc $glibc < 2.34: the aarch64 CUDA wheels are manylinux_2_34 (Ubuntu 22.04+ / DGX OS)" >&2
    fi
    if [ "$force_feed" = 1 ] || [ -z "$(index_versions)" ]; then
      [ "$force_feed" = 1 ] || echo "note: PyPI offers no onnxruntime-gpu wheel for this aarch64 machine; using the CUDA 13 feed" >&2
      index_args=("${feed_args[@]}")
      source_name="the CUDA 13 feed"
    fi ;;
  *) echo "error: no onnxruntime-gpu wheels for $arch" >&2; exit 1 ;;
esac

if [ -z "$version" ]; then
  available=$(index_versions ${index_args[@]+"${index_args[@]}"})
  if [ -n "$cpu_pin" ] && printf ' %s ' "$available" | grep -q " $cpu_pin "; then
    version=$cpu_pin
  else
    version=$(printf '%s\n' "$available" | awk '{print $1}')
    [ -n "$version" ] && [ -n "$cpu_pin" ] && \
      echo "note: onnxruntime-gpu $cpu_pin (the CPU pin) is not on $source_name; using $version" >&2
  fi
fi
spec=onnxruntime-gpu
[ "$with_cuda_libs" = 1 ] && spec="onnxruntime-gpu[cuda,cudnn]"
[ -n "$version" ] && spec="$spec==$version"

say "installing $spec for $arch from $source_name into $python_bin (the only ONNX Runtime wheel)"
read -r -a old <<<"$(ort_dists)"
if [ "${#old[@]}" -gt 0 ]; then
  # both wheels write the same files: remove every one, then install the GPU one fresh
  run "$python_bin" -m pip uninstall -y -q "${old[@]%%==*}"
fi
# its small pure-Python dependencies come from PyPI (the aarch64 feed carries ORT only)
run "$python_bin" -m pip install -q flatbuffers numpy packaging protobuf
install_gpu() {  # install_gpu [INDEX ARGS...]
  if [ "$with_cuda_libs" = 1 ]; then
    run "$python_bin" -m pip install -q "$@" --extra-index-url https://pypi.org/simple "$spec"
  else
    run "$python_bin" -m pip install -q --no-deps --force-reinstall "$@" "$spec"
  fi
}
if ! install_gpu ${index_args[@]+"${index_args[@]}"}; then
  case "$arch:${#index_args[@]}" in
    aarch64:0|arm64:0)
      echo "warning: installing $spec from PyPI failed; falling back to the CUDA 13 feed" >&2
      spec=${spec%%==*}  # the feed has its own versions
      install_gpu "${feed_args[@]}" ;;
    *) exit 1 ;;
  esac
fi
[ "$dry_run" = 1 ] && exit 0
verify
