#!/usr/bin/env bash
# Re-vendor the browser libraries of the terminal page (xterm.js and its fit add-on) from the npm
# registry, at the pinned versions below, into broker/web/static/vendor/xterm/. The broker serves
# them itself: no CDN, nothing fetched at run time. Each tarball's integrity must match the pin;
# VERSIONS.json records versions, tarball integrities and each copied file's SHA-256, which
# tests/unit/test_vendored_js.py checks against the files. To upgrade: change a version, set its
# integrity to the one `npm view PACKAGE@VERSION dist.integrity` prints, run this, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

XTERM=@xterm/xterm@6.0.0
XTERM_INTEGRITY=sha512-TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg==
FIT=@xterm/addon-fit@0.11.0
FIT_INTEGRITY=sha512-jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g==

dest=broker/web/static/vendor/xterm
command -v npm >/dev/null || { echo "npm is missing: install Node.js (Debian: apt-get install nodejs npm)." >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pack SPEC INTEGRITY NAME: fetch the tarball, check it, unpack it into $work/NAME
pack() {
    local json integrity file
    json="$(npm pack "$1" --pack-destination "$work" --json --loglevel=error </dev/null)"
    integrity="$(node -e 'console.log(JSON.parse(process.argv[1])[0].integrity)' "$json")"
    file="$(node -e 'console.log(JSON.parse(process.argv[1])[0].filename)' "$json")"
    if [ "$integrity" != "$2" ]; then
        echo "$1: the registry's tarball has integrity $integrity, not the pinned $2." >&2
        exit 1
    fi
    mkdir -p "$work/$3"
    tar -xzf "$work/$file" -C "$work/$3"
}

pack "$XTERM" "$XTERM_INTEGRITY" xterm
pack "$FIT" "$FIT_INTEGRITY" fit

rm -rf "$dest"
mkdir -p "$dest"
cp "$work/xterm/package/lib/xterm.js" "$work/xterm/package/css/xterm.css" "$dest/"
cp "$work/xterm/package/LICENSE" "$dest/LICENSE.xterm"
cp "$work/fit/package/lib/addon-fit.js" "$dest/"
cp "$work/fit/package/LICENSE" "$dest/LICENSE.addon-fit"

node - "$dest" "$XTERM" "$XTERM_INTEGRITY" "$FIT" "$FIT_INTEGRITY" <<'JS'
const fs = require("fs"), crypto = require("crypto"), path = require("path");
const [dest, xterm, xtermIntegrity, fit, fitIntegrity] = process.argv.slice(2);
const sha256 = (f) => crypto.createHash("sha256").update(fs.readFileSync(path.join(dest, f))).digest("hex");
const entry = (spec, integrity, files) => {
  const at = spec.lastIndexOf("@");
  return [spec.slice(0, at), { version: spec.slice(at + 1), integrity, license: "MIT",
    files: Object.fromEntries(files.map((f) => [f, sha256(f)])) }];
};
const versions = Object.fromEntries([
  entry(xterm, xtermIntegrity, ["xterm.js", "xterm.css", "LICENSE.xterm"]),
  entry(fit, fitIntegrity, ["addon-fit.js", "LICENSE.addon-fit"]),
]);
fs.writeFileSync(path.join(dest, "VERSIONS.json"), JSON.stringify(versions, null, 2) + "\n");
JS
echo "vendored $XTERM and $FIT into $dest"
