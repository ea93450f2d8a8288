#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, a venv in .venv, torch (CPU) first, then the project.
# Every step checks before it acts, so re-running costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k sox libsndfile1 curl git chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python

if ! "$VPY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "[setup] pip install torch==2.13.0 (CPU build)"
  "$VPY" -m pip install -q torch==2.13.0
fi

stamp=.venv/.ttt-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] pip install -e .[dev]"
  "$VPY" -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
