#!/usr/bin/env python3
"""The memory service's request caching, rate limits and database pool against the manual's.

    api-config.py CONFIG_FILE

Reads the service's configuration (YAML or JSON) and prints one JSON object:
{"cache_ttl": {...}, "rate_limits": {...}, "database": {...}, "drift": ["cache_ttl.entity_get 60
(manual: 3600)", ...]}. The settings are looked up as `cache_ttl`/`CACHE_TTL`,
`rate_limits`/`RATE_LIMITS` and `database`/`DATABASE` (pool_size, max_overflow, pool_timeout,
pool_recycle: the manual's Connection Pool Tuning, also read as the flat DATABASE_POOL_SIZE,
DATABASE_MAX_OVERFLOW, DATABASE_POOL_TIMEOUT, DATABASE_POOL_RECYCLE), at the top level or under
`api`; a setting the manual names that is missing counts as drift. A file that
cannot be read or parsed fails (exit 1): a configuration is not judged by guess.
"""
import json
import sys

MANUAL = {
    "cache_ttl": {"entity_search": 300, "entity_get": 3600, "stats": 600},
    "rate_limits": {"default": "100/minute", "search": "30/minute", "bulk_create": "10/minute"},
    "database": {"pool_size": 20, "max_overflow": 30, "pool_timeout": 30, "pool_recycle": 3600},
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
        found = dict(section(config, name))
        if name == "database":
            # The manual writes them as flat constants: DATABASE_POOL_SIZE = 20.
            for scope in (config, config.get("api") or {}):
                for key in expected:
                    flat = "DATABASE_" + key.upper()
                    if key not in found and flat in scope:
                        found[key] = scope[flat]
        out[name] = found
        for key, value in expected.items():
            if found.get(key) != value:
                drift.append("%s.%s %s (manual: %s)" % (name, key, found.get(key, "missing"), value))
    out["drift"] = drift
    print(json.dumps(out))


if __name__ == "__main__":
    main()
