#!/usr/bin/env bash
# Installs, once, what the browser tests of `cairn serve` drive: Debian's chromium, and
# playwright-core from npm (the library alone: it downloads no browser of its own), in a cached
# folder with the version pinned. Idempotent. Prints the path of the node_modules on stdout (for
# NODE_PATH); progress goes to stderr. The browser is /usr/bin/chromium.
#
#   CAIRN_PLAYWRIGHT_DIR   where the package lives (default ~/.cache/cairn/playwright)
set -euo pipefail

dir="${CAIRN_PLAYWRIGHT_DIR:-$HOME/.cache/cairn/playwright}"
version=1.65.1

installed() {
    [ -x /usr/bin/chromium ] && (cd "$dir" 2>/dev/null && node -e '
        if (require("./node_modules/playwright-core/package.json").version !== process.argv[1]) process.exit(1);
    ' "$version") 2>/dev/null
}

if ! command -v chromium >/dev/null; then
    echo "playwright: installing chromium (Debian)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi

if ! installed; then
    echo "playwright: installing playwright-core@$version into $dir" >&2
    mkdir -p "$dir"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --silent \
        "playwright-core@$version" >&2
fi
echo "$dir/node_modules"
