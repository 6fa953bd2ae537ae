//! Templated SQL against the real servers: a value placed by the lexer arrives as data, byte
//! for byte, or the template is refused; and a session that reads SQL otherwise than the lexer
//! (`standard_conforming_strings = off`, an unmodelled `sql_mode`) refuses templated SQL
//! before anything runs. The value that would do harm, were it ever misplaced, is
//! `z'; DROP TABLE victim_…; --`: the table must survive every case.

use cairn_steps::StepError;
use cairn_steps::sql::{Pools, SqlSpec, SqlTarget, run};
use cairn_template::{Dialect, Kind, Templates, from_json};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{query, rows, target, unique};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY: &str = "mysql://root@127.0.0.1:3306/test";

/// Renders `src` for `dialect` with `v` (a value) and `t` (an `| ident` name).
fn render(
    dialect: Dialect,
    src: &str,
    v: &str,
    t: &str,
) -> Result<SqlSpec, cairn_template::TemplateError> {
    let ctx = from_json(&json!({ "v": v, "t": t }));
    let bound = Templates::new().render_sql(src, &ctx, dialect)?;
    let mut spec = SqlSpec::new(bound.sql).with_params(bound.params);
    spec.lexed = bound.lexed;
    Ok(spec)
}

async fn exists(pools: &Pools, db: &SqlTarget, table: &str) -> bool {
    let sql = format!("SELECT count(*) AS n FROM {table}");
    let spec = SqlSpec::new(sql);
    run(pools, db, &spec, &CancellationToken::new())
        .await
        .is_ok()
}

fn drop_value(table: &str) -> String {
    format!("z'; DROP TABLE {table}; --")
}

fn setting_refusal(e: StepError, setting: &str) {
    match e {
        StepError::Setup { message } => {
            assert!(message.contains(setting), "{message}");
            assert!(
                message.contains("refused to run templated SQL"),
                "{message}"
            );
        }
        other => panic!("expected a refusal naming {setting}, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_refuses_templated_sql_when_standard_conforming_strings_is_off() {
    let pools = Pools::new();
    let pg = target(PG);
    let victim = unique("victim");
    query(
        &pools,
        &pg,
        &format!("CREATE TABLE {victim} (x int)"),
        vec![],
    )
    .await;
    let value = drop_value(&victim);

    // A session turned off by an earlier step on the same connection.
    query(&pools, &pg, "SET standard_conforming_strings = off", vec![]).await;
    let spec =
        render(Dialect::Postgres, "SELECT 1 AS {{ t | ident }}", "", &value).expect("render");
    let e = run(&pools, &pg, &spec, &CancellationToken::new())
        .await
        .expect_err("off");
    setting_refusal(e, "standard_conforming_strings = off");
    // SQL without values does not depend on the lexer: it runs.
    let plain = rows(&pools, &pg, r"SELECT 'a\\' AS a", vec![]).await;
    assert_eq!(plain, vec![json!({ "a": "a\\" })]);
    query(&pools, &pg, "RESET standard_conforming_strings", vec![]).await;

    // A role whose sessions start with it off.
    let role = unique("cairn_scs_off");
    query(&pools, &pg, &format!("CREATE ROLE {role} LOGIN"), vec![]).await;
    query(
        &pools,
        &pg,
        &format!("ALTER ROLE {role} SET standard_conforming_strings = off"),
        vec![],
    )
    .await;
    let as_role = target(&format!("postgres://{role}@127.0.0.1:5432/test"));
    let role_pools = Pools::new();
    let e = run(&role_pools, &as_role, &spec, &CancellationToken::new())
        .await
        .expect_err("role");
    setting_refusal(e, "standard_conforming_strings = off");
    role_pools.close().await;

    assert!(exists(&pools, &pg, &victim).await, "{victim} was dropped");
    query(&pools, &pg, &format!("DROP ROLE {role}"), vec![]).await;
    query(&pools, &pg, &format!("DROP TABLE {victim}"), vec![]).await;
    pools.close().await;
}

#[tokio::test]
async fn mysql_quoting_modes_are_lexed_both_ways_and_unmodelled_modes_refused() {
    let my = target(MY);
    let setup = Pools::new();
    let victim = unique("victim");
    query(
        &setup,
        &my,
        &format!("CREATE TABLE {victim} (x int)"),
        vec![],
    )
    .await;
    let value = drop_value(&victim);
    for mode in [
        "NO_BACKSLASH_ESCAPES",
        "ANSI_QUOTES",
        "NO_BACKSLASH_ESCAPES,ANSI_QUOTES",
    ] {
        let pools = Pools::new();
        query(
            &pools,
            &my,
            &format!("SET SESSION sql_mode = CONCAT(@@sql_mode, ',{mode}')"),
            vec![],
        )
        .await;
        // Values that stay data in every mode run, and arrive byte for byte.
        let spec = render(
            Dialect::Mysql,
            r"SELECT 'a\\' AS a, {{ v }} AS b, 1 AS {{ t | ident }}",
            &value,
            &value,
        )
        .expect("render");
        let got = run(&pools, &my, &spec, &CancellationToken::new())
            .await
            .expect(mode);
        assert_eq!(got["rows"][0]["b"], json!(value), "{mode}");
        assert_eq!(got["rows"][0][value.as_str()], json!(1), "{mode}");
        // A template whose string ends by the mode is refused before it reaches a server.
        let e = render(
            Dialect::Mysql,
            r"SELECT '\'', {{ t | ident }} -- '",
            "",
            &value,
        )
        .expect_err(mode);
        assert!(
            e.message
                .contains("sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)"),
            "{}",
            e.message
        );
        pools.close().await;
    }
    // MariaDB's ORACLE mode is not modelled: templated SQL is refused, plain SQL runs.
    let pools = Pools::new();
    query(&pools, &my, "SET SESSION sql_mode = 'ORACLE'", vec![]).await;
    let spec = render(Dialect::Mysql, "SELECT {{ v }} AS b", &value, "").expect("render");
    let e = run(&pools, &my, &spec, &CancellationToken::new())
        .await
        .expect_err("oracle");
    setting_refusal(e, "sql_mode holds ORACLE");
    assert_eq!(
        rows(&pools, &my, "SELECT 1 AS a", vec![]).await,
        vec![json!({ "a": 1 })]
    );
    pools.close().await;

    assert!(exists(&setup, &my, &victim).await, "{victim} was dropped");
    query(&setup, &my, &format!("DROP TABLE {victim}"), vec![]).await;
    setup.close().await;
}

/// One generated case: a dialect, a server mode, the items of a SELECT list.
#[derive(Debug, Clone)]
struct Case {
    dialect: Dialect,
    /// PostgreSQL: `standard_conforming_strings`; MySQL: flags added to `sql_mode`.
    mode: &'static str,
    items: Vec<String>,
    value: String,
}

/// A PostgreSQL dollar quote with a tag of any characters, valid or not.
fn dollar_quote() -> impl Strategy<Value = String> {
    let tag_char = prop::sample::select(vec![
        "a", "Z", "_", "1", "€", "é", "日", "'", " ", "-", "\"", "\r",
    ]);
    let body = prop::sample::select(vec!["x", "'", "$", "\\", "--", "\r", "\n", " ", "é"]);
    (
        prop::collection::vec(tag_char, 0..3),
        prop::collection::vec(body, 0..4),
    )
        .prop_map(|(tag, body)| {
            let tag = tag.concat();
            format!("${tag}${}${tag}$", body.concat())
        })
}

/// Expressions (and comments) of each dialect, each a construct the lexer must read right.
fn fragment(dialect: Dialect, mode: &'static str) -> BoxedStrategy<String> {
    let fixed =
        |list: Vec<&'static str>| prop::sample::select(list).prop_map(str::to_string).boxed();
    match dialect {
        Dialect::Postgres => prop_oneof![
            3 => fixed(vec![
                r"'a\'",
                r"'\\'",
                r"E'x''\''",
                r"E'\\'",
                r"e'\''",
                "'it''s'",
                r"U&'\0041'",
                "1 -- c\r",
                "1 -- c\r\n",
                "1 -- c\n",
                "/* a /* b */ ' */ 1",
                "'x' AS \"q\"\"i\", 1",
                "1$a$",
                // Halves: a string or a dollar quote that a later fragment may close.
                r"E'x''\'",
                "'' -- c\r'\n",
                "$€$ x",
                "x $€$",
            ]),
            1 => dollar_quote(),
        ]
        .boxed(),
        Dialect::Mysql => {
            let mut list = vec![
                r"'a\''",
                r"'a\\'",
                r"'\n'",
                "'it''s'",
                "1 # c\r",
                "1 # c\r\n",
                "1 -- c\r",
                "1 -- c\n",
                "/* ' */ 1",
                "/*! 1 */",
                "/*!50000 ' */ 1",
                "1 AS `q``i`, 1",
                "1 AS a$$, 1",
            ];
            if !mode.contains("ANSI_QUOTES") {
                list.extend([r#""a\"""#, r#""a""b""#]);
            }
            fixed(list)
        }
        Dialect::Sqlite => fixed(vec![
            r"'a\'",
            "'it''s'",
            "'x' AS \"q\"\"i\", 1",
            "1 AS [q], 1",
            "1 -- c\r",
            "1 -- c\n",
            "/* ' */ 1",
            "$a",
            ":a",
            "$a(')",
        ]),
    }
}

/// A construct opened before the `| ident` hole and closed after it, by the server's reading:
/// a lexer that misread the opener would place the name inside it, and the column would be
/// missing (or the table dropped).
fn around(
    dialect: Dialect,
    mode: &'static str,
) -> BoxedStrategy<Option<(&'static str, &'static str)>> {
    let pairs: Vec<(&'static str, &'static str)> = match dialect {
        Dialect::Postgres => vec![
            ("$€$ x", "x $€$"),
            ("$é1$ x", "x $é1$"),
            ("$_$", "$_$"),
            (r"E'x''\'", "'"),
            ("'' -- c\r'\n", "'"),
            (r"'a\'", "'"),
        ],
        Dialect::Mysql if mode.contains("NO_BACKSLASH_ESCAPES") => vec![(r"'a\''", "'")],
        Dialect::Mysql => vec![("1 # c\r", "\n1"), ("/*! 1 */ '", "'")],
        Dialect::Sqlite => vec![("$a(')", "'"), ("1 -- c\r", "\n1")],
    };
    prop::option::of(prop::sample::select(pairs)).boxed()
}

fn case() -> impl Strategy<Value = Case> {
    let dialect = prop::sample::select(vec![Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite]);
    dialect
        .prop_flat_map(|dialect| {
            let modes: Vec<&'static str> = match dialect {
                Dialect::Postgres => vec!["on", "on", "on", "off"],
                Dialect::Mysql => vec![
                    "",
                    "NO_BACKSLASH_ESCAPES",
                    "ANSI_QUOTES",
                    "NO_BACKSLASH_ESCAPES,ANSI_QUOTES",
                ],
                Dialect::Sqlite => vec![""],
            };
            (Just(dialect), prop::sample::select(modes))
        })
        .prop_flat_map(|(dialect, mode)| {
            let value = prop::collection::vec(
                prop::sample::select(vec![
                    "'", "\"", "\\", "$", "€", "-", "\r", "\n", "/", "*", ";", "#", "a", " ", "`",
                ]),
                0..12,
            )
            .prop_map(|parts| parts.concat());
            (
                Just(dialect),
                Just(mode),
                prop::collection::vec(fragment(dialect, mode), 0..4),
                around(dialect, mode),
                any::<bool>(),
                0usize..8,
                value,
            )
        })
        .prop_map(
            |(dialect, mode, fragments, around, with_value, at, value)| {
                let mut items: Vec<String> = fragments
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| format!("{f} AS c{i}"))
                    .collect();
                let ident = "1 AS {{ t | ident }}".to_string();
                let at_ident = at % (items.len() + 1);
                items.insert(at_ident, ident);
                if let Some((open, close)) = around {
                    items.insert(at_ident + 1, format!("{close} AS d1"));
                    items.insert(at_ident, format!("{open} AS d0"));
                }
                if with_value {
                    items.insert((at / 2) % (items.len() + 1), "{{ v }} AS b".to_string());
                }
                Case {
                    dialect,
                    mode,
                    items,
                    value,
                }
            },
        )
}

/// The servers and the table a misplaced value would drop, shared by the cases of one test.
struct Servers {
    rt: tokio::runtime::Runtime,
    pools: Pools,
    victim: String,
    sqlite: SqlTarget,
    _dir: tempfile::TempDir,
}

impl Servers {
    fn new() -> Servers {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let pools = Pools::new();
        let victim = unique("victim");
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = target(&format!("sqlite://{}/p.db?mode=rwc", dir.path().display()));
        rt.block_on(async {
            for db in [target(PG), target(MY), sqlite.clone()] {
                query(
                    &pools,
                    &db,
                    &format!("CREATE TABLE {victim} (x int)"),
                    vec![],
                )
                .await;
            }
        });
        Servers {
            rt,
            pools,
            victim,
            sqlite,
            _dir: dir,
        }
    }

    fn db(&self, dialect: Dialect) -> SqlTarget {
        match dialect {
            Dialect::Postgres => target(PG),
            Dialect::Mysql => target(MY),
            Dialect::Sqlite => self.sqlite.clone(),
        }
    }

    /// Runs the case's setup and `spec` on a connection of its own, in the case's mode.
    fn run(&self, case: &Case, spec: &SqlSpec) -> Result<Value, StepError> {
        let db = self.db(case.dialect);
        self.rt.block_on(async {
            let pools = Pools::new();
            let setup = match (case.dialect, case.mode) {
                (Dialect::Postgres, mode) => format!("SET standard_conforming_strings = {mode}"),
                (Dialect::Mysql, "") => "SELECT 1".to_string(),
                (Dialect::Mysql, mode) => {
                    format!("SET SESSION sql_mode = CONCAT(@@sql_mode, ',{mode}')")
                }
                (Dialect::Sqlite, _) => "SELECT 1".to_string(),
            };
            query(&pools, &db, &setup, vec![]).await;
            let out = run(&pools, &db, spec, &CancellationToken::new()).await;
            pools.close().await;
            out
        })
    }

    /// Creates the table again if a failed case dropped it, so that shrinking sees each case
    /// alone.
    fn victim_ready(&self, dialect: Dialect) {
        let db = self.db(dialect);
        let sql = format!("CREATE TABLE IF NOT EXISTS {} (x int)", self.victim);
        self.rt.block_on(query(&self.pools, &db, &sql, vec![]));
    }

    fn victim_survives(&self, dialect: Dialect) -> bool {
        let db = self.db(dialect);
        self.rt.block_on(exists(&self.pools, &db, &self.victim))
    }
}

fn check(servers: &Servers, case: &Case) -> Result<&'static str, TestCaseError> {
    let src = format!("SELECT {}", case.items.join(", "));
    let ident = drop_value(&servers.victim);
    servers.victim_ready(case.dialect);
    let rendered = render(case.dialect, &src, &case.value, &ident);
    let analysis = Templates::new()
        .analyze(&src, Kind::Sql(case.dialect))
        .map_err(|e| TestCaseError::fail(format!("{src:?}: {e}")))?;
    let outcome = match rendered {
        Err(e) => {
            // Refused: the same hole is located by the analysis that `cairn validate` runs.
            prop_assert!(
                !analysis.refused.is_empty(),
                "{src:?}: render refused ({e}) but analysis did not"
            );
            let r = &analysis.refused[0];
            let at = &src[r.offset..r.offset + r.len];
            prop_assert!(at == "v" || at == "t | ident", "{src:?}: refusal at {at:?}");
            "refused"
        }
        Ok(spec) => {
            prop_assert!(
                analysis.refused.is_empty(),
                "{src:?}: rendered, yet analysis refused {:?}",
                analysis.refused
            );
            match servers.run(case, &spec) {
                Ok(result) => {
                    let row = &result["rows"][0];
                    prop_assert_eq!(
                        &row[ident.as_str()],
                        &json!(1),
                        "{:?} {:?}: {}",
                        case.mode,
                        src,
                        result
                    );
                    if spec.params.len() == 1 {
                        prop_assert_eq!(
                            &row["b"],
                            &json!(case.value),
                            "{:?} {:?}: {}",
                            case.mode,
                            src,
                            result
                        );
                    }
                    "ran"
                }
                Err(StepError::Setup { message }) if case.mode == "off" => {
                    prop_assert!(
                        message.contains("standard_conforming_strings = off"),
                        "{}",
                        message
                    );
                    "refused by the server check"
                }
                // Accepted text the server does not take (an unclosed half, a construct the
                // lexer gave up on with no hole after it): nothing ran, which the table shows.
                Err(_) => "server error",
            }
        }
    };
    prop_assert!(
        servers.victim_survives(case.dialect),
        "{:?} {:?}: the table was dropped",
        case.mode,
        src
    );
    Ok(outcome)
}

#[test]
fn generated_templates_place_values_as_data_or_are_refused_in_every_server_mode() {
    let servers = Servers::new();
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<(String, &str), u32>::new());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |case| {
        let outcome = check(&servers, &case)?;
        *seen
            .lock()
            .expect("seen")
            .entry((format!("{:?}", case.dialect), outcome))
            .or_default() += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The interesting shapes were generated: every dialect both ran and was refused.
    let seen = seen.into_inner().expect("seen");
    for dialect in ["Postgres", "Mysql", "Sqlite"] {
        for outcome in ["ran", "refused"] {
            assert!(
                seen.get(&(dialect.to_string(), outcome))
                    .is_some_and(|n| *n > 0),
                "no {dialect} case {outcome}: {seen:?}"
            );
        }
    }
    servers.rt.block_on(async {
        for d in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            query(
                &servers.pools,
                &servers.db(d),
                &format!("DROP TABLE {}", servers.victim),
                vec![],
            )
            .await;
        }
        servers.pools.close().await;
    });
}
