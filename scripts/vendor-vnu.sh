#!/usr/bin/env bash
# Fetch the Nu HTML Checker (vnu.jar) from the npm registry (package `vnu-jar`, published by the
# validator's maintainers with every release) into tests/e2e/vendor/vnu/, which git ignores.
# The end-to-end tests validate every page with it on the machine's Java (11 or newer).
# Does nothing when that version is already there, so CI and the tests can call it every run.
set -euo pipefail
VNU=26.9.27
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/tests/e2e/vendor/vnu"
if [ -f "$dest/vnu.jar" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$VNU" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "vendor-vnu: npm is needed to fetch vnu-jar" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "vnu-jar@$VNU" >/dev/null && tar -xzf "vnu-jar-$VNU.tgz")
mkdir -p "$dest"
cp "$work/package/build/dist/vnu.jar" "$dest/vnu.jar.part"
mv "$dest/vnu.jar.part" "$dest/vnu.jar"
echo "$VNU" > "$dest/VERSION"
echo "vendor-vnu: vnu-jar $VNU (MIT) in $dest"
