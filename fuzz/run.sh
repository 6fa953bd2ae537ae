#!/usr/bin/env bash
# Seed the `validate` corpus and fuzz the parser and validator for SECONDS (default 60).
#
#   fuzz/run.sh [SECONDS] [extra libFuzzer flags...]
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 unlocks the `-Z` flags cargo-fuzz passes, and
# stable ships the AddressSanitizer runtime (librustc-stable_rt.asan.a). CAIRN_FUZZ_SANITIZER=none
# runs about 3.5 times faster and still catches panics, out-of-memory and timeouts. Crashes land
# in fuzz/artifacts/validate/; see docs/fuzzing.md.
set -euo pipefail

seconds="${1:-60}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
corpus="$here/corpus/validate"
mkdir -p "$corpus"

# Seeds: the shipped runbooks, the golden-test runbooks, and every YAML string literal in the
# diagnostics tests (each a malformed runbook close to a validation edge). Names are content hashes,
# so re-seeding is idempotent and libFuzzer's own corpus entries are left alone.
python3 - "$root" "$corpus" <<'PY'
import glob, hashlib, json, os, re, sys

root, corpus = sys.argv[1], sys.argv[2]

def save(data: bytes) -> None:
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(corpus, name), "wb") as f:
        f.write(data)

count = 0
for pattern in ("runbooks/*.yaml", "tests/golden/*.yaml"):
    for path in sorted(glob.glob(os.path.join(root, pattern))):
        with open(path, "rb") as f:
            save(f.read())
        count += 1

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}

def unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in ESCAPES:
            out.append(ESCAPES[nxt])
            i += 2
        elif nxt == "u":  # \u{XXXX}
            end = body.index("}", i)
            out.append(chr(int(body[i + 3 : end], 16)))
            i = end + 1
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "\n":  # line continuation: skip the newline and leading whitespace
            i += 2
            while i < len(body) and body[i] in " \t\n":
                i += 1
        else:
            raise ValueError(f"unknown escape \\{nxt}")
    return "".join(out)

# None of those uses anchors and aliases: one that does, so the mutator starts from them.
save(b"""cairn: 1
name: anchors
vars:
  region: &region eu-west-1
  tags: &tags [backup, nightly]
steps:
  - id: a
    shell: echo {{ vars.region }}
    env: &env { REGION: *region, MODE: full }
  - id: b
    needs: [a]
    shell: echo $REGION
    env: *env
    retry: &retry { attempts: 3, delay: 1s }
""")
count += 1

with open(os.path.join(root, "crates/model/tests/diagnostics.rs"), encoding="utf-8") as f:
    source = f.read()
for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', source, re.S):
    text = unescape(m.group(1))
    if "cairn:" in text or "steps:" in text:
        save(text.encode())
        count += 1
print(f"seeded {count} inputs into {corpus}", file=sys.stderr)

# A dictionary for the mutator: every key the JSON Schema knows, and YAML and template syntax.
words = set()
def walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                words.update(value)
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
with open(os.path.join(root, "schemas/runbook.schema.json"), encoding="utf-8") as f:
    walk(json.load(f))
words.update([
    "{{", "}}", "{%", "%}", "{#", "#}", " | ", "inputs.", "steps.", "vars.", "secrets.", "targets.",
    "run.", "item", "result.", "outputs.", "for ", "endfor", "if ", "endif", "raw", "ident",
    "strftime", "duration", "to_json", "from_json", "default(", "---", "...", ": ", "- ", "? ",
    "&a ", "*a", "<<: ", "!!str ", "!!int ", "|-", ">-", "[", "]", "{", "}", "null", "~", "true",
    "0x1F", "1e400", ".nan", "-.inf", "\t", "\u00e9", "30s", "1h30m", "cairn: 1",
])
with open(os.path.join(os.path.dirname(corpus), "validate.dict"), "w", encoding="utf-8") as f:
    for word in sorted(words):
        # libFuzzer's dictionary syntax knows only \\, \" and \xAB escapes.
        escaped = "".join(
            chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02X}"
            for b in word.encode()
        )
        f.write(f'"{escaped}"\n')
PY

cd "$here"
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "${CAIRN_FUZZ_SANITIZER:-address}" validate "$corpus" -- \
    -max_len=4096 -max_total_time="$seconds" -dict="$here/corpus/validate.dict" -print_final_stats=1 "$@"
