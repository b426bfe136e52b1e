#!/usr/bin/env bash
# One-time set-up: a software WebGPU adapter when the machine has no GPU driver,
# Chromium for the browser tests, and the npm dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash scripts/install-lavapipe.sh
fi
npm ci --no-audit --no-fund
