#!/usr/bin/env bash
# System tools the tests use as independent readers (HDF5 command-line tools).
# Installs them with apt-get when missing and we are root; otherwise says what is missing.
set -euo pipefail
missing=()
command -v h5dump >/dev/null 2>&1 || missing+=(hdf5-tools)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} not installed (needs root/apt-get); tests that use them are skipped" >&2
fi
