#!/usr/bin/env bash
# Install the Debian packages labkit needs (as root), or print the one command to run.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
else
  echo "labkit needs these Debian packages: ${missing[*]}"
  echo "Run:  sudo apt-get install -y ${missing[*]}"
  echo "(Without them: Fashion-MNIST falls back to torchvision's cache or a download; the browser test is skipped.)"
fi
