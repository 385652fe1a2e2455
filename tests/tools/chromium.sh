#!/usr/bin/env bash
# Makes sure headless Chromium (Debian's `chromium` package) is installed, for the
# report test that renders an access-review page in a real browser. Skips the install
# when `chromium` is already on PATH; fails with a clear message when it cannot install.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed and apt-get is unavailable: install Debian's 'chromium' package (or put a 'chromium' binary on PATH) to run the report test" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "chromium is not installed and this user cannot run apt-get: run 'apt-get install -y chromium' as root" >&2
    exit 1
  fi
fi

echo "installing chromium (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq >&2 || ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >&2; then
  echo "could not install chromium with apt-get: the report test needs it" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "apt-get ran but no 'chromium' is on PATH" >&2; exit 1; }
