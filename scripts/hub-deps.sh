#!/usr/bin/env bash
# What the JupyterHub test (tests/test_hub.py) needs beyond the dev extras: the `jupyterhub` Python package in the
# project's environment and `configurable-http-proxy` from npm. Installs what is missing, does nothing otherwise.
# Usage: scripts/hub-deps.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
JUPYTERHUB_SPEC="${JUPYTERHUB_SPEC:-jupyterhub>=4.1}"
CHP_SPEC="${CHP_SPEC:-configurable-http-proxy@^4.6}"

if ! "$PY" -c "import jupyterhub" >/dev/null 2>&1; then
  echo "Installing $JUPYTERHUB_SPEC into $("$PY" -c 'import sys; print(sys.prefix)')"
  "$PY" -m pip install -q "$JUPYTERHUB_SPEC"
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "configurable-http-proxy needs npm (Node.js): install nodejs and npm, then run: npm install -g $CHP_SPEC"
    echo "(Without it the JupyterHub test is skipped.)"
    exit 0
  fi
  if [ "$(id -u)" -eq 0 ] || [ -w "$(npm prefix -g)/lib" ]; then
    echo "Installing $CHP_SPEC with npm"
    npm install -g --no-fund --no-audit --loglevel=error "$CHP_SPEC"
  else
    echo "configurable-http-proxy is missing. Run:  sudo npm install -g $CHP_SPEC"
    echo "(Without it the JupyterHub test is skipped.)"
  fi
fi
