//! The `chroma` step's single-call actions against a real Chroma server (one per test binary).
//! Each test uses its own collection names: they share the server and run in parallel.

mod common;

use cairn_steps::StepError;
use cairn_steps::chroma::{ChromaAction, ChromaClient, ChromaTarget, Collections};
use common::chroma_server::{ChromaServer, act, client, shared};
use common::http_server::TestServer;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};

/// The shared server's client, or None when Chroma is not installed (outside CI).
fn chroma() -> Option<ChromaClient> {
    shared().map(common::chroma_server::ChromaServer::client)
}

async fn ok(client: &ChromaClient, action: Value) -> Value {
    let shown = action.to_string();
    act(client, action)
        .await
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
}

async fn err(client: &ChromaClient, action: Value) -> StepError {
    let shown = action.to_string();
    act(client, action)
        .await
        .err()
        .unwrap_or_else(|| panic!("{shown} should fail"))
}

#[tokio::test]
async fn heartbeat_and_version_speak_v2() {
    let Some(c) = chroma() else { return };
    let beat = ok(&c, json!({"heartbeat": {}})).await;
    assert_eq!(beat["api"], "v2");
    assert!(
        beat["nanosecond_heartbeat"].as_u64().is_some_and(|n| n > 0),
        "{beat}"
    );
    let version = ok(&c, json!({"version": {}})).await;
    assert_eq!(version["api"], "v2");
    assert!(
        version["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{version}"
    );
}

#[tokio::test]
async fn create_with_hnsw_settings_reads_them_back() {
    let Some(c) = chroma() else { return };
    let create = json!({"create": {"name": "act-hnsw", "metadata": {"team": "memory"},
        "hnsw": {"space": "cosine", "construction_ef": 200, "search_ef": 100, "M": 16}}});
    let created = ok(&c, create.clone()).await;
    let hnsw = &created["configuration"]["hnsw"];
    assert_eq!(
        (
            &hnsw["space"],
            &hnsw["ef_construction"],
            &hnsw["ef_search"],
            &hnsw["max_neighbors"]
        ),
        (&json!("cosine"), &json!(200), &json!(100), &json!(16)),
        "{created}"
    );
    assert_eq!(created["metadata"], json!({"team": "memory"}));
    assert_eq!(created["dimension"], Value::Null);

    // get_or_create (the default) returns the same collection; a listing shows the same settings.
    assert_eq!(ok(&c, create).await["id"], created["id"]);
    let list = ok(&c, json!({"list": {}})).await;
    let listed = list["collections"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["name"] == "act-hnsw"));
    let listed = listed.unwrap_or_else(|| panic!("act-hnsw not listed: {list}"));
    assert_eq!(
        listed["configuration"]["hnsw"],
        created["configuration"]["hnsw"]
    );
    assert_eq!(listed["count"], 0);

    let again = err(
        &c,
        json!({"create": {"name": "act-hnsw", "get_or_create": false}}),
    )
    .await;
    assert!(
        again
            .to_string()
            .starts_with("Chroma creating collection `act-hnsw` failed:"),
        "{again}"
    );
    assert!(again.to_string().contains("already exists"), "{again}");

    let bad = err(
        &c,
        json!({"create": {"name": "act-bad-space", "hnsw": {"space": "manhattan"}}}),
    )
    .await;
    assert_eq!(
        bad.to_string(),
        "unknown HNSW space `manhattan` (expected cosine, l2 or ip)"
    );
}

#[tokio::test]
async fn add_upsert_get_query_count() {
    let Some(c) = chroma() else { return };
    ok(
        &c,
        json!({"create": {"name": "act-records", "hnsw": {"space": "l2"}}}),
    )
    .await;
    let added = ok(
        &c,
        json!({"add": {"collection": "act-records", "ids": ["a", "b", "c"],
        "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "metadatas": [{"kind": "x", "n": 1}, {"kind": "y", "n": 2}, null],
        "documents": ["doc a", null, "doc c"]}}),
    )
    .await;
    assert_eq!(added, json!({"collection": "act-records", "records": 3}));
    assert_eq!(
        ok(&c, json!({"count": {"collection": "act-records"}})).await,
        json!({"count": 3})
    );

    ok(
        &c,
        json!({"upsert": {"collection": "act-records", "ids": ["a", "d"],
        "embeddings": [[0.5, 0.5, 0.0], [1.0, 1.0, 1.0]], "documents": ["new a", "doc d"]}}),
    )
    .await;
    assert_eq!(
        ok(&c, json!({"count": {"collection": "act-records"}})).await,
        json!({"count": 4})
    );

    let got = ok(
        &c,
        json!({"get": {"collection": "act-records", "ids": ["a"],
        "include": ["embeddings", "documents"]}}),
    )
    .await;
    assert_eq!(got["count"], 1);
    assert_eq!(got["documents"], json!(["new a"]));
    assert_eq!(got["embeddings"], json!([[0.5, 0.5, 0.0]]));

    let by_where = ok(
        &c,
        json!({"get": {"collection": "act-records", "where": {"kind": "y"}}}),
    )
    .await;
    assert_eq!(by_where["ids"], json!(["b"]));
    let paged = ok(
        &c,
        json!({"get": {"collection": "act-records", "limit": 2, "offset": 3}}),
    )
    .await;
    assert_eq!(paged["count"], 1);

    let found = ok(&c, json!({"query": {"collection": "act-records",
        "query_embeddings": [[0.0, 0.9, 0.1]], "n_results": 2, "include": ["distances", "documents"]}}))
    .await;
    assert_eq!(found["ids"][0][0], "b", "{found}");
    assert_eq!(found["ids"][0].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_wrong_dimension_fails_clearly() {
    let Some(c) = chroma() else { return };
    ok(&c, json!({"create": {"name": "act-dims"}})).await;
    ok(
        &c,
        json!({"add": {"collection": "act-dims", "ids": ["a"], "embeddings": [[1.0, 2.0, 3.0]]}}),
    )
    .await;
    let wrong = err(
        &c,
        json!({"add": {"collection": "act-dims", "ids": ["b"], "embeddings": [[1.0, 2.0]]}}),
    )
    .await;
    assert_eq!(
        wrong.to_string(),
        "add on collection `act-dims`: embedding 0 has dimension 2, expected 3 \
         [MEM-005 vector dimension mismatch: check embedding model consistency]"
    );
    let query = err(
        &c,
        json!({"query": {"collection": "act-dims", "query_embeddings": [[1.0]]}}),
    )
    .await;
    assert!(query.to_string().contains("MEM-005"), "{query}");

    let shape = err(
        &c,
        json!({"add": {"collection": "act-dims", "ids": ["x", "y"], "embeddings": [[1.0, 2.0, 3.0]]}}),
    );
    assert_eq!(
        shape.await.to_string(),
        "add: 2 ids but 1 embeddings: give one per id"
    );

    // What only the server can tell comes back as one line with Chroma's words.
    let bogus = err(
        &c,
        json!({"get": {"collection": "act-dims", "include": ["bogus"]}}),
    )
    .await;
    let line = bogus.to_string();
    assert!(
        line.starts_with("Chroma get on collection `act-dims` failed: "),
        "{line}"
    );
    assert!(line.contains("unknown variant `bogus`"), "{line}");
    assert!(line.contains("(HTTP 4") && !line.contains('\n'), "{line}");
}

#[tokio::test]
async fn delete_and_unknown_collections() {
    let Some(c) = chroma() else { return };
    ok(&c, json!({"create": {"name": "act-doomed"}})).await;
    assert_eq!(
        ok(&c, json!({"delete": {"name": "act-doomed"}})).await,
        json!({"name": "act-doomed", "deleted": true})
    );
    let gone = err(&c, json!({"count": {"collection": "act-doomed"}})).await;
    assert_eq!(
        gone.to_string(),
        "unknown collection `act-doomed` in Chroma default_tenant/default_database"
    );
    let again = err(&c, json!({"delete": {"name": "act-doomed"}})).await;
    assert!(
        again
            .to_string()
            .contains("cannot delete unknown collection `act-doomed`"),
        "{again}"
    );
    let tolerated = ok(
        &c,
        json!({"delete": {"name": "act-doomed", "missing_ok": true}}),
    )
    .await;
    assert_eq!(tolerated["deleted"], false);
}

#[tokio::test]
async fn list_shows_counts() {
    let Some(c) = chroma() else { return };
    for (name, n) in [("act-list-one", 1), ("act-list-two", 2)] {
        ok(&c, json!({"create": {"name": name, "metadata": {"n": n}}})).await;
        let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let embeddings: Vec<[f32; 2]> = (0..n).map(|i| [i as f32, 1.0]).collect();
        ok(
            &c,
            json!({"add": {"collection": name, "ids": ids, "embeddings": embeddings}}),
        )
        .await;
    }
    let list = ok(&c, json!({"list": {}})).await;
    let all = list["collections"].as_array().expect("collections");
    assert_eq!(list["total"].as_u64(), Some(all.len() as u64));
    for (name, n) in [("act-list-one", 1), ("act-list-two", 2)] {
        let entry = all
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {list}"));
        assert_eq!(
            (
                &entry["count"],
                &entry["dimension"],
                &entry["metadata"]["n"]
            ),
            (&json!(n), &json!(2), &json!(n))
        );
        assert!(
            entry["id"].as_str().is_some_and(|id| id.len() == 36),
            "{entry}"
        );
    }
}

/// `list` counts every collection it lists: one deleted in between is left out, not an error.
/// Chroma answers a count that races a deletion with 412 "Missing metadata segment", not 404.
/// On a server of its own: the churn would otherwise reach the other tests' listings.
#[tokio::test]
async fn list_skips_collections_deleted_while_it_runs() {
    let Some(server) = ChromaServer::start() else {
        return;
    };
    let c = server.client();
    ok(&c, json!({"create": {"name": "churn-kept"}})).await;
    let churning = AtomicBool::new(true);
    let churn = async {
        for round in 0..40 {
            let name = format!("churn-{round}");
            ok(&c, json!({"create": {"name": name}})).await;
            ok(
                &c,
                json!({"add": {"collection": name, "ids": ["a"], "embeddings": [[1.0, 0.0]]}}),
            )
            .await;
            ok(&c, json!({"delete": {"name": name}})).await;
        }
        churning.store(false, Ordering::Relaxed);
    };
    let lists = async {
        let mut lists = 0;
        while churning.load(Ordering::Relaxed) {
            let list = ok(&c, json!({"list": {}})).await;
            let names: Vec<&str> = list["collections"]
                .as_array()
                .expect("collections")
                .iter()
                .filter_map(|e| e["name"].as_str())
                .collect();
            assert!(names.contains(&"churn-kept"), "{list}");
            lists += 1;
        }
        lists
    };
    let ((), lists) = tokio::join!(churn, lists);
    assert!(lists > 0);
}

#[tokio::test]
async fn connection_refused_names_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let e = err(
        &client(&format!("http://127.0.0.1:{port}")),
        json!({"list": {}}),
    )
    .await;
    assert!(matches!(e, StepError::Setup { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("connection refused: GET http://127.0.0.1:{port}/api/v2/heartbeat")
    );
}

#[tokio::test]
async fn an_old_server_is_spoken_to_in_v1() {
    let old = TestServer::start().await; // answers 404 on /api/v2/*, like Chroma before 0.6
    let c = client(&old.url(""));
    assert_eq!(
        ok(&c, json!({"heartbeat": {}})).await,
        json!({"nanosecond_heartbeat": 42, "api": "v1"})
    );
    assert_eq!(
        ok(&c, json!({"version": {}})).await,
        json!({"version": "0.4.24", "api": "v1"})
    );
}

#[tokio::test]
async fn the_token_is_sent_both_ways_and_a_path_prefix_is_kept() {
    let echo = TestServer::start().await;
    let mut target = ChromaTarget::new(echo.url("/echo"));
    target.token = Some("tok-123".into());
    let c = ChromaClient::new(target, reqwest::Client::new());
    let seen = ok(&c, json!({"version": {}})).await;
    let request = &seen["version"];
    assert_eq!(request["path"], "/echo/api/v2/version");
    assert_eq!(request["headers"]["authorization"], "Bearer tok-123");
    assert_eq!(request["headers"]["x-chroma-token"], "tok-123");
    assert!(!format!("{:?}", c.target()).contains("tok-123"));
}

#[test]
fn actions_parse_like_the_runbook_writes_them() {
    let parse = |v: Value| serde_json::from_value::<ChromaAction>(v);
    let count = parse(json!({"count": {"collection": "memories"}})).expect("count");
    assert_eq!((count.name(), count.is_read_only()), ("count", true));
    let export =
        parse(json!({"export": {"collections": "all", "to": "/b/c.jsonl"}})).expect("export");
    assert_eq!((export.name(), export.is_read_only()), ("export", false));
    assert!(matches!(
        export,
        ChromaAction::Export {
            collections: Collections::All,
            ..
        }
    ));
    let named = parse(json!({"export": {"collections": ["a", "b"], "to": "x"}})).expect("named");
    assert!(
        matches!(named, ChromaAction::Export { collections: Collections::Named(ref n), .. } if n.len() == 2)
    );
    let hnsw = parse(json!({"create": {"name": "x", "hnsw": {"M": 16, "ef_construction": 200}}}))
        .expect("hnsw");
    assert!(
        matches!(hnsw, ChromaAction::Create { hnsw: Some(ref h), .. } if h.max_neighbors == Some(16) && h.construction_ef == Some(200))
    );
    for action in ["heartbeat", "version", "list"] {
        assert!(parse(json!({action: {}})).expect(action).is_read_only());
    }
    let writes = [
        json!({"add": {"collection": "x", "ids": [], "embeddings": []}}),
        json!({"delete": {"name": "x"}}),
    ];
    assert!(
        writes
            .into_iter()
            .all(|w| !parse(w).expect("write").is_read_only())
    );

    let typo = parse(json!({"count": {"colection": "memories"}})).expect_err("unknown field");
    assert!(
        typo.to_string().contains("unknown field `colection`"),
        "{typo}"
    );
    let word =
        parse(json!({"export": {"collections": "memories", "to": "x"}})).expect_err("a bare name");
    assert!(
        word.to_string()
            .contains("not \"memories\" (write [memories])"),
        "{word}"
    );
    assert!(parse(json!({"heartbeat": {"extra": 1}})).is_err());
}
