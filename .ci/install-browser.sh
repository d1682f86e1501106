#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the report's browser test (tests/test_report_browser.py).
# Idempotent and quiet: nothing happens when both are installed; without apt-get (or root) it says
# so and the browser test skips, naming what is missing.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: no apt-get; install chromium and chromium-driver by hand or the browser test is skipped"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "warning: not root and no sudo; the browser test will be skipped"; exit 0; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
  || echo "warning: could not install chromium and chromium-driver; the browser test will be skipped"
exit 0
