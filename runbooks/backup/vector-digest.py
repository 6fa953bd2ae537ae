#!/usr/bin/env python3
"""Digest of a Cairn Chroma export (JSON Lines), per collection; optionally compared with another.

    vector-digest.py EXPORT.jsonl [--against REFERENCE.jsonl]

Prints a JSON list sorted by collection name: {"collection", "count", "dimension", "checksum"}.
`checksum` is the SHA-256 of the records' ids, metadata and documents in id order (canonical
JSON), so two exports of the same collection digest alike whatever order the server gave.

Embeddings are not in the checksum: ChromaDB may store a vector it is given again one float32
step (ULP) away from before (seen with cosine collections), so an exact hash of embeddings
cannot survive a restore. With --against, every embedding of EXPORT is compared with the same
id's in REFERENCE, component by component, within 1e-6 (absolute, or relative above 1); the
same ids, metadata, documents and dimensions, and any difference beyond that fails (exit 1,
naming the collection and record).
"""
import hashlib
import json
import sys

TOLERANCE = 1e-6


def load(path):
    cols = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("type") == "collection":
                cols.setdefault(rec["name"], {"records": {}, "dimension": rec.get("dimension")})
            elif rec.get("type") == "record":
                c = cols.setdefault(rec["collection"], {"records": {}, "dimension": None})
                c["records"][rec["id"]] = rec
    return cols


def digest(cols):
    out = []
    for name in sorted(cols):
        c = cols[name]
        h = hashlib.sha256()
        for rid in sorted(c["records"]):
            rec = c["records"][rid]
            canon = [rid, rec.get("metadata"), rec.get("document")]
            h.update(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\n")
        out.append({"collection": name, "count": len(c["records"]),
                    "dimension": c["dimension"], "checksum": h.hexdigest()})
    return out


def compare(cols, ref):
    worst = 0.0
    if sorted(cols) != sorted(ref):
        return f"collections differ: {sorted(cols)} against {sorted(ref)}", worst
    for name in sorted(ref):
        a, b = cols[name]["records"], ref[name]["records"]
        if sorted(a) != sorted(b):
            missing = sorted(set(b) - set(a))[:5]
            extra = sorted(set(a) - set(b))[:5]
            return f"{name}: ids differ (missing {missing}, extra {extra})", worst
        for rid in sorted(b):
            for field in ("metadata", "document"):
                if a[rid].get(field) != b[rid].get(field):
                    return f"{name}/{rid}: {field} {a[rid].get(field)!r} against {b[rid].get(field)!r}", worst
            ea, eb = a[rid].get("embedding") or [], b[rid].get("embedding") or []
            if len(ea) != len(eb):
                return f"{name}/{rid}: dimension {len(ea)} against {len(eb)}", worst
            for i, (x, y) in enumerate(zip(ea, eb)):
                d = abs(x - y) / max(1.0, abs(y))
                worst = max(worst, d)
                if d > TOLERANCE:
                    return f"{name}/{rid}[{i}]: {x} against {y}", worst
    return None, worst


def main():
    cols = load(sys.argv[1])
    out = digest(cols)
    if len(sys.argv) == 4 and sys.argv[2] == "--against":
        problem, worst = compare(cols, load(sys.argv[3]))
        print(f"embeddings: largest difference {worst:.3g} (tolerance {TOLERANCE})", file=sys.stderr)
        if problem:
            print(f"vectors differ from the reference: {problem}", file=sys.stderr)
            sys.exit(1)
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
