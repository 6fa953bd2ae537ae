#!/usr/bin/env python3
"""The HNSW settings of every ChromaDB collection against the manual's.

    chroma-settings.py < collections.json

Reads the `collections` of a Cairn `chroma list` result (JSON) on stdin and prints one JSON
object: {"collections": [{"name", "space", "construction_ef", "search_ef", "M", "drift": [...]}],
"drifted": [names]}. A setting is read from the collection's `configuration.hnsw` (API v2) or
its `hnsw:*` metadata (API v1); a setting found in neither is reported as null and counts as
drift (it cannot be shown to hold).
"""
import json
import sys

MANUAL = {"space": "cosine", "construction_ef": 200, "search_ef": 100, "M": 16}
# Names of each setting in the v2 configuration and in v1 metadata.
NAMES = {
    "space": ("space", "hnsw:space"),
    "construction_ef": ("ef_construction", "hnsw:construction_ef"),
    "search_ef": ("ef_search", "hnsw:search_ef"),
    "M": ("max_neighbors", "hnsw:M"),
}


def main():
    collections = json.load(sys.stdin)
    out, drifted = [], []
    for c in collections:
        hnsw = ((c.get("configuration") or {}).get("hnsw")) or {}
        meta = c.get("metadata") or {}
        row = {"name": c["name"]}
        drift = []
        for key, (v2, v1) in NAMES.items():
            value = hnsw.get(v2, meta.get(v1))
            row[key] = value
            if value != MANUAL[key]:
                drift.append("%s %s (manual: %s)" % (key, value, MANUAL[key]))
        row["drift"] = drift
        out.append(row)
        if drift:
            drifted.append(c["name"])
    print(json.dumps({"collections": out, "drifted": drifted}))


if __name__ == "__main__":
    main()
