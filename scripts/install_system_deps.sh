#!/usr/bin/env bash
# System tools the tests use: HDF5's command-line tools as an independent reader, and the
# ZIP writers tests/zipread/test_writers.py archives with (Info-ZIP zip, 7-Zip, libarchive's bsdtar,
# the JDK's jar). Installs the missing ones with apt-get (Debian 12 package names) when we are
# root; otherwise says what is missing. Under CI a missing writer fails its tests.
set -euo pipefail
missing=()
need() { # need BINARY PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need h5dump hdf5-tools
need zip zip
need 7zz 7zip
need bsdtar libarchive-tools
need jar default-jdk-headless
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # Slim Debian images drop the man folders, and the JDK's postinst (update-alternatives
  # linking its man pages) fails without this one.
  mkdir -p /usr/share/man/man1
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} not installed (needs root/apt-get); tests that use them are skipped (they fail when CI is set)" >&2
fi
