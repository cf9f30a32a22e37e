#!/usr/bin/env bash
# Fetch the front-end packages from the npm registry and copy their built files into static/vendor/.
# The versions below are the ones committed; change them here and re-run `make static`.
set -euo pipefail
HTMX=2.0.11
TABLER=1.6.1
AXE=4.14.1   # accessibility checker for the end-to-end tests only (tests/e2e/vendor)
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" "@tabler/core@$TABLER" "axe-core@$AXE" >/dev/null
mkdir -p htmx tabler axe "$dest" "$here/tests/e2e/vendor"
tar -xzf htmx.org-$HTMX.tgz -C htmx
tar -xzf tabler-core-$TABLER.tgz -C tabler
tar -xzf axe-core-$AXE.tgz -C axe
cp axe/package/axe.min.js "$here/tests/e2e/vendor/axe.min.js"
echo "axe-core $AXE (axe.min.js), MPL-2.0" > "$here/tests/e2e/vendor/VERSIONS"
cp htmx/package/dist/htmx.min.js "$dest/htmx.min.js"
cp tabler/package/dist/css/tabler.min.css "$dest/tabler.min.css"
cp tabler/package/dist/js/tabler.min.js "$dest/tabler.min.js"
cat > "$dest/VERSIONS" <<V
htmx.org $HTMX (dist/htmx.min.js)
@tabler/core $TABLER (dist/css/tabler.min.css, dist/js/tabler.min.js)
V
echo "vendored into $dest:"; cat "$dest/VERSIONS"
