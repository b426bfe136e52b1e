#!/usr/bin/env bash
# One-time set-up: a software WebGPU adapter when the machine has no GPU driver,
# Chromium for the browser tests, and the npm dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  bash scripts/install-lavapipe.sh
  if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
npm ci --no-audit --no-fund
