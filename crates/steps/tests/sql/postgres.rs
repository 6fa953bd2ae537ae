//! PostgreSQL at postgres://postgres@127.0.0.1:5432/test (trust auth): values in and out.

use cairn_steps::sql::{Pools, SqlSpec, SqlTarget};
use serde_json::json;

use super::{fails, query, rows, target, unique};

pub(super) const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(super) fn pg() -> SqlTarget {
    target(URL)
}

/// A fresh schema, dropped by the caller with [`drop_schema`].
pub(super) async fn schema(pools: &Pools) -> String {
    let name = unique("cairn_test");
    query(pools, &pg(), &format!("CREATE SCHEMA {name}"), vec![]).await;
    name
}

pub(super) async fn drop_schema(pools: &Pools, name: &str) {
    query(pools, &pg(), &format!("DROP SCHEMA {name} CASCADE"), vec![]).await;
    pools.close().await;
}

#[tokio::test]
async fn every_type_maps_faithfully() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    query(
        &pools,
        &pg(),
        &format!("CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')"),
        vec![],
    )
    .await;
    let sql = format!(
        r#"SELECT 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8,
            1.5::float4 AS f4, 0.1::float4 AS f4b, 0.1::float8 AS f8,
            'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::float4 AS ninf,
            12345678901234567890.123456789::numeric AS num, 1.50::numeric(10,2) AS num2,
            0.0001::numeric AS small, -42::numeric AS neg, 'NaN'::numeric AS numnan,
            'txt'::text AS t, 'v'::varchar(5) AS v, 'c'::char(3) AS c, 'pg_class'::name AS n,
            true AS b, false AS bf, NULL::int AS nul,
            '2024-05-01 03:04:05.123456+02'::timestamptz AS tz, 'infinity'::timestamptz AS tzinf,
            '2024-05-01 03:04:05'::timestamp AS ts, '2024-05-01 03:04:05.5'::timestamp AS tsf,
            '2024-05-01'::date AS d, '-infinity'::date AS dinf,
            '13:14:15'::time AS tm, '13:14:15.25'::time AS tmf, '13:14:15+02'::timetz AS ttz,
            '1 year 2 months 3 days 04:05:06.5'::interval AS iv, '-90 minutes'::interval AS ivn,
            '{{"a": [1, 2.5, null], "b": "x"}}'::jsonb AS jb, '{{"z": 1, "a": 2}}'::json AS js,
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '\xdeadbeef'::bytea AS by,
            ARRAY['a', NULL, 'c']::text[] AS ta, ARRAY[1, 2, 3]::int4[] AS ia, ARRAY[]::int8[] AS ea,
            ARRAY[1.5, 2]::numeric[] AS na, ARRAY['{{"k":1}}']::jsonb[] AS ja,
            'happy'::{s}.mood AS mood, ARRAY['sad']::{s}.mood[] AS moods,
            'pg_class'::regclass AS rc, 'pg_class'::regclass::text AS rct, 1259::oid AS o,
            '10.0.0.5'::inet AS ip, '10.0.0.0/8'::cidr AS net, '::1'::inet AS ip6, '192.168.0.1/24'::inet AS ipm,
            '08:00:2b:01:02:03'::macaddr AS mac, '<a/>'::xml AS x"#
    );
    let got = rows(&pools, &pg(), &sql, vec![]).await;
    let want = json!({
        "i2": 1, "i4": 2, "i8": 9007199254740993_i64,
        "f4": 1.5, "f4b": 0.1, "f8": 0.1,
        "nan": "NaN", "inf": "Infinity", "ninf": "-Infinity",
        "num": "12345678901234567890.123456789", "num2": "1.50",
        "small": "0.0001", "neg": "-42", "numnan": "NaN",
        "t": "txt", "v": "v", "c": "c  ", "n": "pg_class",
        "b": true, "bf": false, "nul": null,
        "tz": "2024-05-01T01:04:05.123456+00:00", "tzinf": "infinity",
        "ts": "2024-05-01T03:04:05", "tsf": "2024-05-01T03:04:05.500000",
        "d": "2024-05-01", "dinf": "-infinity",
        "tm": "13:14:15", "tmf": "13:14:15.250000", "ttz": "13:14:15+02:00",
        "iv": "1 year 2 mons 3 days 04:05:06.5", "ivn": "-01:30:00",
        "jb": {"a": [1, 2.5, null], "b": "x"}, "js": {"z": 1, "a": 2},
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "by": "3q2+7w==",
        "ta": ["a", null, "c"], "ia": [1, 2, 3], "ea": [],
        "na": ["1.5", "2"], "ja": [{"k": 1}],
        "mood": "happy", "moods": ["sad"],
        "rc": 1259, "rct": "pg_class", "o": 1259,
        "ip": "10.0.0.5", "net": "10.0.0.0/8", "ip6": "::1", "ipm": "192.168.0.1/24",
        "mac": "08:00:2b:01:02:03", "x": "<a/>",
    });
    assert_eq!(got, vec![want.clone()]);
    // Columns keep the query's order.
    let keys: Vec<&String> = got[0]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let want_keys: Vec<&String> = want
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, want_keys);

    // A type with a binary wire form and no mapping: a clear error naming column and type.
    let e = fails(&pools, &pg(), &SqlSpec::new("SELECT point(1, 2) AS p")).await;
    let message = e.to_string();
    assert!(
        message.starts_with("column `p` of type POINT has no JSON form"),
        "{message}"
    );
    assert!(message.contains("p::text"), "{message}");
    drop_schema(&pools, &s).await;
}

#[tokio::test]
async fn the_result_has_counts_and_duration_and_repeated_names_survive() {
    let pools = Pools::new();
    let v = query(
        &pools,
        &pg(),
        "SELECT 1 AS n, 2 AS n, 3 AS n UNION ALL SELECT 4, 5, 6",
        vec![],
    )
    .await;
    assert_eq!(
        v["rows"],
        json!([{"n": 1, "n_2": 2, "n_3": 3}, {"n": 4, "n_2": 5, "n_3": 6}])
    );
    assert_eq!(v["row_count"], 2);
    assert!(v["duration_ms"].is_u64());
    pools.close().await;
}

#[tokio::test]
async fn parameters_bind_each_json_type() {
    let pools = Pools::new();
    let params = vec![
        json!(null),
        json!(true),
        json!(-5),
        json!(u64::MAX),
        json!(2.5),
        json!("hi"),
        json!([1, "two"]),
        json!({"k": "v"}),
    ];
    let got = rows(&pools, &pg(), "SELECT $1 AS n, $2 AS b, $3 AS i, $4 AS u, $5 AS f, $6 AS s, $7::jsonb AS a, $8::json AS o", params).await;
    assert_eq!(
        got,
        vec![
            json!({"n": null, "b": true, "i": -5, "u": "18446744073709551615", "f": 2.5, "s": "hi", "a": [1, "two"], "o": {"k": "v"}})
        ]
    );
    // Where nothing tells the type: strings are text.
    let got = rows(
        &pools,
        &pg(),
        "SELECT $1 IS NULL AS missing, $2 IS NULL AS present",
        vec![json!(null), json!("x")],
    )
    .await;
    assert_eq!(got, vec![json!({"missing": true, "present": false})]);
    pools.close().await;
}

#[tokio::test]
async fn strings_bind_like_literals_into_typed_columns() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    let t = format!("{s}.items");
    query(
        &pools,
        &pg(),
        &format!("CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')"),
        vec![],
    )
    .await;
    query(
        &pools,
        &pg(),
        &format!("CREATE TABLE {t} (id int4, at timestamptz, u uuid, d date, n numeric, tags text[], meta jsonb, m {s}.mood, ip inet, nothing int4)"),
        vec![],
    )
    .await;
    let v = query(
        &pools,
        &pg(),
        &format!("INSERT INTO {t} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        vec![
            json!(7),
            json!("2024-05-01T03:00:00Z"),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            json!("2024-05-01"),
            json!("12.50"),
            json!(["x", "y z"]),
            json!({"k": [1, 2]}),
            json!("happy"),
            json!("10.1.2.3"),
            json!(null),
        ],
    )
    .await;
    assert_eq!(v["rows_affected"], 1);
    let got = rows(
        &pools,
        &pg(),
        &format!("SELECT id, at, n, tags, meta, m, ip, nothing FROM {t} WHERE u = $1 AND at < $2 AND id = ANY($3) AND m = $4"),
        vec![json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), json!("2024-06-01 00:00:00+00"), json!([6, 7, 8]), json!("happy")],
    )
    .await;
    assert_eq!(
        got,
        vec![
            json!({"id": 7, "at": "2024-05-01T03:00:00+00:00", "n": "12.50", "tags": ["x", "y z"], "meta": {"k": [1, 2]}, "m": "happy", "ip": "10.1.2.3", "nothing": null})
        ]
    );
    // A bad literal is refused by PostgreSQL with its own words.
    let spec = SqlSpec::new(format!("SELECT 1 FROM {t} WHERE u = $1"))
        .with_params(vec![json!("not-a-uuid")]);
    let e = fails(&pools, &pg(), &spec).await;
    assert!(
        e.to_string()
            .starts_with(r#"invalid input syntax for type uuid: "not-a-uuid" (SQLSTATE 22P02)"#),
        "{e}"
    );
    // The same text again after the table changed shape: no stale cached plan.
    query(
        &pools,
        &pg(),
        &format!("ALTER TABLE {t} ADD COLUMN extra int4 DEFAULT 1"),
        vec![],
    )
    .await;
    let got = rows(
        &pools,
        &pg(),
        &format!("SELECT * FROM {t} WHERE u = $1"),
        vec![json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
    )
    .await;
    assert_eq!(got[0]["extra"], 1);
    drop_schema(&pools, &s).await;
}

#[tokio::test]
async fn injection_attempts_stay_data() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    let t = format!("{s}.t");
    query(&pools, &pg(), &format!("CREATE TABLE {t} (v text)"), vec![]).await;
    let evil = "'; DROP TABLE t; --";
    query(
        &pools,
        &pg(),
        &format!("INSERT INTO {t} VALUES ($1)"),
        vec![json!(evil)],
    )
    .await;
    let got = rows(
        &pools,
        &pg(),
        &format!("SELECT v FROM {t} WHERE v = $1"),
        vec![json!(evil)],
    )
    .await;
    assert_eq!(got, vec![json!({"v": evil})]);
    let got = rows(
        &pools,
        &pg(),
        &format!("SELECT count(*) AS n FROM {t}"),
        vec![],
    )
    .await;
    assert_eq!(got, vec![json!({"n": 1})]);
    drop_schema(&pools, &s).await;
}

#[tokio::test]
async fn notices_are_kept_in_the_result_in_order_and_apart_per_query() {
    let pools = Pools::new();
    let s = schema(&pools).await;
    query(
        &pools,
        &pg(),
        &format!("CREATE TABLE {s}.t (a int); INSERT INTO {s}.t SELECT generate_series(1, 50)"),
        vec![],
    )
    .await;
    // VACUUM VERBOSE reports as INFO; alone it runs outside a transaction.
    let vacuum = query(&pools, &pg(), &format!("VACUUM (VERBOSE) {s}.t"), vec![]).await;
    let infos = vacuum["notices"].as_array().cloned().unwrap_or_default();
    assert!(!infos.is_empty(), "{vacuum}");
    assert!(infos.iter().all(|n| n["severity"] == "INFO"), "{vacuum}");
    assert!(
        infos.iter().any(|n| n["message"]
            .as_str()
            .unwrap_or_default()
            .contains("vacuuming")),
        "{vacuum}"
    );
    assert_eq!(vacuum["notices_truncated"], false);

    // RAISE at each level a client is sent, with a bound parameter; and a plain NOTICE of DDL.
    let raise = format!(
        "CREATE FUNCTION {s}.say(t text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
         RAISE INFO 'info %', t; RAISE NOTICE 'notice %', t; RAISE WARNING 'warning %', t; \
         RAISE DEBUG 'not sent'; RETURN 1; END $$"
    );
    query(&pools, &pg(), &raise, vec![]).await;
    let said = query(
        &pools,
        &pg(),
        &format!("SELECT {s}.say($1) AS n"),
        vec![json!("x")],
    )
    .await;
    assert_eq!(
        said["notices"],
        json!([
            {"severity": "INFO", "message": "info x"},
            {"severity": "NOTICE", "message": "notice x"},
            {"severity": "WARNING", "message": "warning x"},
        ])
    );
    let drop = query(
        &pools,
        &pg(),
        &format!("DROP TABLE IF EXISTS {s}.nope"),
        vec![],
    )
    .await;
    assert_eq!(drop["notices"][0]["severity"], "NOTICE", "{drop}");
    let quiet = query(&pools, &pg(), "SELECT 1 AS n", vec![]).await;
    assert_eq!(quiet["notices"], json!([]));

    // Queries running at once keep their own notices.
    let many = (0..8).map(|i| {
        let pools = &pools;
        let sql = format!("SELECT {s}.say($1) AS n, pg_sleep(0.05)");
        async move { query(pools, &pg(), &sql, vec![json!(format!("q{i}"))]).await }
    });
    let results = futures::future::join_all(many).await;
    for (i, r) in results.iter().enumerate() {
        let messages: Vec<&str> = r["notices"]
            .as_array()
            .map(|l| l.iter().filter_map(|n| n["message"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            messages,
            [
                format!("info q{i}"),
                format!("notice q{i}"),
                format!("warning q{i}")
            ],
            "{r}"
        );
    }

    // A flood is bounded.
    let flood = query(
        &pools,
        &pg(),
        "DO $$ BEGIN FOR i IN 1..500 LOOP RAISE NOTICE '%', repeat('x', 1000); END LOOP; END $$",
        vec![],
    )
    .await;
    // 65 whole messages, then the 66th cut to the 64 KiB of all messages.
    assert_eq!(flood["notices"].as_array().map(Vec::len), Some(66));
    assert_eq!(flood["notices_truncated"], true);
    drop_schema(&pools, &s).await;
}
