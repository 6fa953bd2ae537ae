#!/usr/bin/env python3
"""The memory service's request caching and rate limits against the manual's.

    api-config.py CONFIG_FILE

Reads the service's configuration (YAML or JSON) and prints one JSON object:
{"cache_ttl": {...}, "rate_limits": {...}, "drift": ["cache_ttl.entity_get 60 (manual: 3600)", ...]}.
The settings are looked up as `cache_ttl`/`CACHE_TTL` and `rate_limits`/`RATE_LIMITS`, at the top
level or under `api`; a setting the manual names that is missing counts as drift. A file that
cannot be read or parsed fails (exit 1): a configuration is not judged by guess.
"""
import json
import sys

MANUAL = {
    "cache_ttl": {"entity_search": 300, "entity_get": 3600, "stats": 600},
    "rate_limits": {"default": "100/minute", "search": "30/minute", "bulk_create": "10/minute"},
}


def load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # PyYAML: only needed for a YAML configuration

        return yaml.safe_load(text)


def section(config, name):
    for scope in (config, config.get("api") or {}):
        for key in (name, name.upper()):
            if isinstance(scope.get(key), dict):
                return scope[key]
    return {}


def main():
    config = load(sys.argv[1]) or {}
    out, drift = {}, []
    for name, expected in MANUAL.items():
        found = section(config, name)
        out[name] = found
        for key, value in expected.items():
            if found.get(key) != value:
                drift.append("%s.%s %s (manual: %s)" % (name, key, found.get(key, "missing"), value))
    out["drift"] = drift
    print(json.dumps(out))


if __name__ == "__main__":
    main()
