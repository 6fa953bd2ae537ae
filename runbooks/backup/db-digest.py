#!/usr/bin/env python3
"""Digest of a PostgreSQL database's content and schema; a dump taken in the same snapshot; a diff.

    db-digest.py DBURL                        digest of the database now
    db-digest.py DBURL --dump FILE            pg_dump --format=custom into FILE, and the digest of
                                              exactly what the dump holds (the same snapshot)
    db-digest.py DBURL --against REF.json     digest, then compared with REF (exit 1 on a difference)
    db-digest.py --diff EXPECTED.json ACTUAL.json

Prints a JSON object: {"tables": [{"table", "rows", "checksum"}], "schema": [{"kind", "name",
"definition"}]}, each sorted by name (a backup manifest carries both keys, so a manifest is a
reference too). A table's checksum is the MD5 of its rows' text, order-free. The schema lists every
column (type, NOT NULL, default), index, constraint, sequence, function (MD5 of its definition),
trigger, view and extension of the `public` schema, from the catalogs, so it does not depend on
pg_dump's layout. A sequence's definition ends with its state: "next value above max(t.id)", or,
when a restore left it behind, "next value 2 collides with max(t.id) 300".

Everything is read in one REPEATABLE READ READ ONLY transaction, so rows and schema are one instant.
With --dump, that transaction exports its snapshot (pg_export_snapshot) and holds it open while
`pg_dump --snapshot` runs, then digests in it: the digest describes the dump itself, however
much the application writes meanwhile. A dump that fails, or that holds another set of tables than
the digest counted, fails (exit 1) and the dump file is removed.

Differences are named one by one on stderr ("memory_entities: rows expected 300, got 299",
"index idx_x: missing after the restore"), all on the last line, which Cairn quotes in the error.
Connects with psql (PGPASSWORD from the environment, if any).
"""
import json
import os
import subprocess
import sys

TABLES = r"""
SELECT coalesce(jsonb_agg(jsonb_build_object('table', t.table_name, 'rows', t.rows, 'checksum', t.checksum)
                          ORDER BY t.table_name), '[]')::text
FROM (SELECT t.table_name,
             (xpath('/row/n/text()', query_to_xml(format(
                'SELECT count(*) AS n FROM %I.%I', t.table_schema, t.table_name),
                false, true, '')))[1]::text::bigint AS rows,
             (xpath('/row/s/text()', query_to_xml(format(
                'SELECT md5(coalesce(string_agg(md5(r::text), '''' ORDER BY md5(r::text)), '''')) AS s FROM %I.%I AS r',
                t.table_schema, t.table_name), false, true, '')))[1]::text AS checksum
      FROM information_schema.tables t
      WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE') AS t;
"""

SCHEMA = r"""
WITH seq AS (
  SELECT s.sequencename, s.data_type, s.start_value, s.increment_by, s.min_value, s.max_value, s.cycle,
         coalesce(s.last_value + s.increment_by, s.start_value) AS next_value,
         oc.relname AS owner_table, oa.attname AS owner_column
  FROM pg_sequences s
  JOIN pg_class sc ON sc.relname = s.sequencename
  JOIN pg_namespace sn ON sn.oid = sc.relnamespace AND sn.nspname = s.schemaname
  LEFT JOIN pg_depend d ON d.objid = sc.oid AND d.classid = 'pg_class'::regclass
       AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  LEFT JOIN pg_class oc ON oc.oid = d.refobjid
  LEFT JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
  WHERE s.schemaname = 'public'
), seq_state AS (
  SELECT seq.*,
         CASE WHEN owner_table IS NULL THEN NULL
              ELSE (xpath('/row/m/text()', query_to_xml(format('SELECT max(%I) AS m FROM public.%I',
                    owner_column, owner_table), false, true, '')))[1]::text::numeric END AS owner_max
  FROM seq
), objs AS (
  SELECT 'column' AS kind, c.relname || '.' || a.attname AS name,
         format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '') AS definition
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL
  SELECT 'constraint', c.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public'
  UNION ALL
  SELECT 'sequence', sequencename,
         format('%s start %s increment %s min %s max %s%s', data_type, start_value, increment_by,
                min_value, max_value, CASE WHEN cycle THEN ' cycle' ELSE '' END)
         || CASE WHEN owner_table IS NULL THEN ''
                 ELSE format(' owned by %s.%s; ', owner_table, owner_column)
                      || CASE WHEN owner_max IS NULL OR (increment_by > 0 AND next_value > owner_max)
                                   OR (increment_by < 0 AND next_value < owner_max)
                              THEN format('next value beyond max(%s.%s)', owner_table, owner_column)
                              ELSE format('next value %s collides with max(%s.%s) %s', next_value,
                                          owner_table, owner_column, owner_max) END END
  FROM seq_state
  UNION ALL
  SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
         'md5 ' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
  UNION ALL
  SELECT 'trigger', c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND NOT t.tgisinternal
  UNION ALL
  SELECT 'view', viewname, 'md5 ' || md5(definition) FROM pg_views WHERE schemaname = 'public'
  UNION ALL
  SELECT 'extension', extname, extversion FROM pg_extension
)
SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'name', name, 'definition', definition)
                          ORDER BY kind, name), '[]')::text
FROM objs;
"""

BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def psql(url):
    return subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--dbname", url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(session, script):
    out, err = session.communicate(script)
    if session.returncode != 0:
        fail("psql: " + (err.strip().splitlines() or ["exit code %d" % session.returncode])[-1])
    lines = [line for line in out.splitlines() if line.strip()]
    if len(lines) != 2:
        fail("psql gave %d result lines, expected 2" % len(lines))
    return {"tables": json.loads(lines[0]), "schema": json.loads(lines[1])}


def digest(url):
    return finish(psql(url), BEGIN + TABLES + SCHEMA + "COMMIT;\n")


def dump_and_digest(url, path):
    session = psql(url)
    session.stdin.write(BEGIN + "SELECT pg_export_snapshot();\n")
    session.stdin.flush()
    snapshot = session.stdout.readline().strip()
    if not snapshot:
        session.kill()
        fail("could not export a snapshot: " + session.stderr.read().strip())
    # The transaction above stays open (psql waits on its stdin) while pg_dump reads its snapshot.
    dump = subprocess.run(["pg_dump", "--format=custom", "--snapshot=" + snapshot, "--file=" + path,
                           "--dbname=" + url], capture_output=True, text=True)
    if dump.returncode != 0:
        session.kill()
        remove(path)
        fail("pg_dump --snapshot=%s failed: %s" % (snapshot, dump.stderr.strip()))
    result = finish(session, TABLES + SCHEMA + "COMMIT;\n")
    listed = subprocess.run(["pg_restore", "--list", path], capture_output=True, text=True)
    data = sorted(line.split()[-2] for line in listed.stdout.splitlines()
                  if " TABLE DATA public " in line and not line.startswith(";"))
    counted = sorted(t["table"] for t in result["tables"])
    if listed.returncode != 0 or data != counted:
        remove(path)
        fail("inconsistent backup: the dump holds data of %s, the snapshot counted %s" % (data, counted))
    result["snapshot"] = snapshot
    return result


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def differences(expected, actual):
    """Each difference as (short, full): the short one for the summary line, the full on a line of its own."""
    out = []
    exp = {t["table"]: t for t in expected.get("tables", [])}
    act = {t["table"]: t for t in actual.get("tables", [])}
    for name in sorted(set(exp) | set(act)):
        e, a = exp.get(name), act.get(name)
        if a is None:
            out.append(("table %s: missing (expected %s rows)" % (name, e["rows"]),) * 2)
        elif e is None:
            out.append(("table %s: unexpected (%s rows)" % (name, a["rows"]),) * 2)
        else:
            if e["rows"] != a["rows"]:
                out.append(("%s: rows expected %s, got %s" % (name, e["rows"], a["rows"]),) * 2)
            if e["checksum"] != a["checksum"]:
                out.append(("%s: content differs" % name, "%s: content checksum expected %s, got %s"
                            % (name, e["checksum"], a["checksum"])))
    if "schema" not in expected:
        out.append(("the reference has no schema digest",) * 2)
        return out
    key = lambda o: (o["kind"], o["name"])
    exp = {key(o): o["definition"] for o in expected["schema"]}
    act = {key(o): o["definition"] for o in actual.get("schema", [])}
    for kind, name in sorted(set(exp) | set(act)):
        e, a = exp.get((kind, name)), act.get((kind, name))
        what = "%s %s" % (kind, name)
        if a is None:
            out.append((what + ": missing", "%s: missing (expected `%s`)" % (what, e)))
        elif e is None:
            out.append((what + ": unexpected", "%s: unexpected (`%s`)" % (what, a)))
        elif e != a:
            # A sequence's state follows its definition after "; ": that tail is the news.
            ehead, _, _ = e.partition("; ")
            ahead, _, atail = a.partition("; ")
            short = atail if ehead == ahead and atail else "now `%s`" % a
            out.append(("%s: %s" % (what, short), "%s: expected `%s`, got `%s`" % (what, e, a)))
    return out


def report(expected, actual, what):
    diffs = differences(expected, actual)
    if diffs:
        for _, full in diffs:
            print(full, file=sys.stderr)
        print("%d difference(s) from %s" % (len(diffs), what), file=sys.stderr)
        print("%d difference(s): %s" % (len(diffs), "; ".join(s for s, _ in diffs)), file=sys.stderr)
        sys.exit(1)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--diff":
        report(load(args[1]), load(args[2]), args[1])
        return
    if len(args) == 1:
        out = digest(args[0])
    elif len(args) == 3 and args[1] == "--dump":
        out = dump_and_digest(args[0], args[2])
    elif len(args) == 3 and args[1] == "--against":
        out = digest(args[0])
        json.dump(out, sys.stdout, sort_keys=True)
        print()
        report(load(args[2]), out, args[2])
        return
    else:
        fail("usage:\n" + "\n".join(__doc__.strip().splitlines()[2:6]))
    json.dump(out, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
