#!/usr/bin/env bash
# Installs, once, the real consumers the report tests check Cairn's outputs with: xmllint (JUnit
# XML against the JUnit schema) and promtool (Prometheus text format) from Debian, and the Mermaid
# parser under jsdom from npm, in a cached folder with mermaid and jsdom pinned. Idempotent.
# Prints the path of the node_modules on stdout (for NODE_PATH); progress goes to stderr.
#
#   CAIRN_NODE_DIR   where the packages live (default ~/.cache/cairn/node)
set -euo pipefail

dir="${CAIRN_NODE_DIR:-$HOME/.cache/cairn/node}"
want="mermaid@11.17.2 jsdom@26.1.0"

installed() {
    (cd "$dir" 2>/dev/null && node -e '
        const want = process.argv.slice(1);
        for (const w of want) {
            const [name, version] = w.split("@");
            if (require("./node_modules/" + name + "/package.json").version !== version) process.exit(1);
        }' $want) 2>/dev/null
}

if ! command -v xmllint >/dev/null || ! command -v promtool >/dev/null; then
    echo "consumers: installing libxml2-utils and prometheus (Debian)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml2-utils prometheus >&2
fi

if ! installed; then
    echo "consumers: installing $want into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent $want >&2
fi
echo "$dir/node_modules"
