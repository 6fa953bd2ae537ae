//! Export and import of whole collections against a real Chroma server: the backup path.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cairn_steps::StepError;
use cairn_steps::chroma::ChromaClient;
use common::chroma_server::{ChromaServer, act, shared};
use serde_json::{Value, json};

const DIM: usize = 8;

fn chroma() -> Option<ChromaClient> {
    shared().map(ChromaServer::client)
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

/// A deterministic, never-zero embedding (cosine collections normalise zero vectors badly).
fn embedding(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| ((i * 31 + j * 17) % 97) as f32 / 97.0 + 0.01 * (j + 1) as f32)
        .collect()
}

/// Fills `name` with `n` records: varied metadata, some records without metadata or document.
async fn fill(c: &ChromaClient, name: &str, space: &str, n: usize, dim: usize) {
    ok(
        c,
        json!({"create": {"name": name, "metadata": {"owner": "cairn-test", "space": space},
        "hnsw": {"space": space, "construction_ef": 200, "M": 16}}}),
    )
    .await;
    let ids: Vec<String> = (0..n).map(|i| format!("{name}-{i:05}")).collect();
    let embeddings: Vec<Vec<f32>> = (0..n).map(|i| embedding(i, dim)).collect();
    let metadatas: Vec<Value> = (0..n)
        .map(|i| if i % 5 == 4 { Value::Null } else { json!({"i": i, "even": i % 2 == 0, "score": i as f64 / 4.0, "tag": format!("t{}", i % 3)}) })
        .collect();
    let documents: Vec<Option<String>> = (0..n)
        .map(|i| (i % 3 != 0).then(|| format!("memory {i} of {name}")))
        .collect();
    ok(
        c,
        json!({"upsert": {"collection": name, "ids": ids, "embeddings": embeddings,
        "metadatas": metadatas, "documents": documents}}),
    )
    .await;
}

/// Every record of a collection: id -> (embedding, metadata, document).
async fn snapshot(c: &ChromaClient, name: &str) -> BTreeMap<String, (Vec<f64>, Value, Value)> {
    let got = ok(
        c,
        json!({"get": {"collection": name, "limit": 100000,
        "include": ["embeddings", "metadatas", "documents"]}}),
    )
    .await;
    let column = |key: &str| {
        got[key]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{key} in get of {name}"))
    };
    let (ids, embeddings, metadatas, documents) = (
        column("ids"),
        column("embeddings"),
        column("metadatas"),
        column("documents"),
    );
    let mut records = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let embedding = embeddings[i]
            .as_array()
            .expect("embedding")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        records.insert(
            id.as_str().expect("id").to_owned(),
            (embedding, metadatas[i].clone(), documents[i].clone()),
        );
    }
    records
}

/// Same ids, metadata and documents; embeddings equal up to f32 rounding (cosine collections
/// store normalised vectors, so a value may come back one ulp away).
fn assert_same(
    name: &str,
    before: &BTreeMap<String, (Vec<f64>, Value, Value)>,
    after: &BTreeMap<String, (Vec<f64>, Value, Value)>,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "ids of {name}"
    );
    for (id, (embedding, metadata, document)) in before {
        let (embedding2, metadata2, document2) = &after[id];
        assert_eq!((metadata, document), (metadata2, document2), "{name}/{id}");
        assert_eq!(embedding.len(), embedding2.len(), "{name}/{id}");
        for (a, b) in embedding.iter().zip(embedding2) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{name}/{id}: {embedding:?} vs {embedding2:?}"
            );
        }
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("export file");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn export_then_import_restores_collections_exactly() {
    let Some(c) = chroma() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("chroma.jsonl");
    fill(&c, "xfer-big", "cosine", 1200, DIM).await;
    fill(&c, "xfer-small", "l2", 37, DIM).await;
    let before = (
        snapshot(&c, "xfer-big").await,
        snapshot(&c, "xfer-small").await,
    );
    assert_eq!(before.0.len(), 1200);

    let exported = ok(
        &c,
        json!({"export": {"collections": ["xfer-big", "xfer-small"], "to": file}}),
    )
    .await;
    assert_eq!(exported["records"], 1237);
    assert_eq!(
        exported["collections"],
        json!([{"name": "xfer-big", "count": 1200, "dimension": DIM}, {"name": "xfer-small", "count": 37, "dimension": DIM}])
    );
    assert_eq!(exported["path"], file.display().to_string());
    assert_eq!(
        exported["bytes"].as_u64(),
        std::fs::metadata(&file).ok().map(|m| m.len())
    );
    assert!(
        !dir.path().join("chroma.jsonl.partial").exists(),
        "the partial file is renamed away"
    );

    let written = lines(&file);
    assert_eq!(written.len(), 2 + 1237 + 1);
    let header = &written[0];
    assert_eq!(
        (&header["type"], &header["name"], &header["count"]),
        (&json!("collection"), &json!("xfer-big"), &json!(1200))
    );
    assert_eq!(header["configuration"]["hnsw"]["space"], "cosine");
    assert_eq!(written[1]["type"], "record");
    assert_eq!(written[1]["collection"], "xfer-big");
    assert_eq!(written[1201]["name"], "xfer-small");
    assert_eq!(
        written[1239],
        json!({"type": "end", "collections": 2, "records": 1237})
    );

    for name in ["xfer-big", "xfer-small"] {
        ok(&c, json!({"delete": {"name": name}})).await;
    }
    let imported = ok(&c, json!({"import": {"from": file, "batch_size": 300}})).await;
    assert_eq!(imported["records"], 1237);
    assert_eq!(
        imported["collections"],
        json!([{"name": "xfer-big", "expected": 1200, "count": 1200, "dimension": DIM},
               {"name": "xfer-small", "expected": 37, "count": 37, "dimension": DIM}])
    );
    assert_same("xfer-big", &before.0, &snapshot(&c, "xfer-big").await);
    assert_same("xfer-small", &before.1, &snapshot(&c, "xfer-small").await);

    // The collections come back with their settings and metadata.
    let list = ok(&c, json!({"list": {}})).await;
    let big = list["collections"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["name"] == "xfer-big"))
        .cloned();
    let big = big.expect("xfer-big listed");
    assert_eq!(
        big["metadata"],
        json!({"owner": "cairn-test", "space": "cosine"})
    );
    let hnsw = &big["configuration"]["hnsw"];
    assert_eq!(
        (
            &hnsw["space"],
            &hnsw["ef_construction"],
            &hnsw["max_neighbors"]
        ),
        (&json!("cosine"), &json!(200), &json!(16))
    );

    // Importing the same file again is harmless: records are upserted, counts still match.
    let again = ok(
        &c,
        json!({"import": {"from": file, "collections": ["xfer-small"]}}),
    )
    .await;
    assert_eq!(again["collections"][0]["count"], 37);
    assert_eq!(again["collections"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn import_into_a_collection_of_another_dimension_fails_with_mem_005() {
    let Some(c) = chroma() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dims.jsonl");
    fill(&c, "xfer-dims", "l2", 10, DIM).await;
    ok(
        &c,
        json!({"export": {"collections": ["xfer-dims"], "to": file, "batch_size": 3}}),
    )
    .await;
    ok(&c, json!({"delete": {"name": "xfer-dims"}})).await;
    fill(&c, "xfer-dims", "l2", 2, 4).await;

    let e = err(&c, json!({"import": {"from": file}})).await;
    assert_eq!(
        e.to_string(),
        "collection `xfer-dims` has embeddings of dimension 4, the file's have 8: cannot import into it \
         [MEM-005 vector dimension mismatch: check embedding model consistency]"
    );
    assert_eq!(
        ok(&c, json!({"count": {"collection": "xfer-dims"}})).await["count"],
        2,
        "nothing was written"
    );

    // `replace` recreates it from the file.
    let replaced = ok(&c, json!({"import": {"from": file, "replace": true}})).await;
    assert_eq!(
        replaced["collections"][0],
        json!({"name": "xfer-dims", "expected": 10, "count": 10, "dimension": DIM})
    );
}

#[tokio::test]
async fn a_truncated_file_fails_before_changing_anything() {
    let Some(c) = chroma() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("whole.jsonl");
    fill(&c, "xfer-cut", "l2", 50, DIM).await;
    ok(
        &c,
        json!({"export": {"collections": ["xfer-cut"], "to": file}}),
    )
    .await;
    let text = std::fs::read_to_string(&file).expect("export");

    let mid_line = dir.path().join("mid-line.jsonl");
    std::fs::write(&mid_line, &text[..text.len() / 2]).expect("write");
    let e = err(&c, json!({"import": {"from": mid_line, "replace": true}})).await;
    assert!(e.to_string().contains("the last line is cut off"), "{e}");
    assert!(e.to_string().ends_with("the file is truncated"), "{e}");

    let kept: Vec<&str> = text.lines().take(21).collect();
    let at_line = dir.path().join("at-line.jsonl");
    std::fs::write(&at_line, kept.join("\n") + "\n").expect("write");
    let e = err(&c, json!({"import": {"from": at_line, "replace": true}})).await;
    assert_eq!(
        e.to_string(),
        format!(
            "{} is truncated: it stops in collection `xfer-cut` after 20 of 50 records without its end line",
            at_line.display()
        )
    );
    // `replace: true` did not get to delete anything.
    assert_eq!(
        ok(&c, json!({"count": {"collection": "xfer-cut"}})).await["count"],
        50
    );

    let e = err(
        &c,
        json!({"import": {"from": file, "collections": ["nope"]}}),
    )
    .await;
    assert_eq!(
        e.to_string(),
        format!(
            "collection `nope` is not in {} (it holds: xfer-cut)",
            file.display()
        )
    );
}

#[tokio::test]
async fn a_failed_export_leaves_no_file() {
    let Some(c) = chroma() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("none.jsonl");
    let e = err(
        &c,
        json!({"export": {"collections": ["xfer-missing"], "to": file}}),
    )
    .await;
    assert_eq!(
        e.to_string(),
        "unknown collection `xfer-missing` in Chroma default_tenant/default_database"
    );
    let listing: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(listing.is_empty(), "{listing:?}");

    ok(&c, json!({"create": {"name": "xfer-nodir"}})).await;
    let nowhere = dir.path().join("no/such/dir/x.jsonl");
    let e = err(
        &c,
        json!({"export": {"collections": ["xfer-nodir"], "to": nowhere}}),
    )
    .await;
    assert!(
        e.to_string()
            .starts_with(&format!("cannot create {}.partial: ", nowhere.display())),
        "{e}"
    );
}

/// `collections: all` on a server of its own, so that other tests' collections stay out of it;
/// also shows an empty collection survives the round trip.
#[tokio::test]
async fn export_all_and_import_a_subset() {
    let Some(server) = ChromaServer::start() else {
        return;
    };
    let c = server.client();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("all.jsonl");
    fill(&c, "all-one", "ip", 5, 3).await;
    ok(&c, json!({"create": {"name": "all-empty"}})).await;
    let exported = ok(&c, json!({"export": {"collections": "all", "to": file}})).await;
    assert_eq!(exported["records"], 5);
    let mut names: Vec<&str> = exported["collections"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["all-empty", "all-one"]);

    for name in ["all-one", "all-empty"] {
        ok(&c, json!({"delete": {"name": name}})).await;
    }
    let imported = ok(
        &c,
        json!({"import": {"from": file, "collections": ["all-empty"]}}),
    )
    .await;
    assert_eq!(
        imported,
        json!({"collections": [{"name": "all-empty", "expected": 0, "count": 0, "dimension": null}], "records": 0})
    );
    let list = ok(&c, json!({"list": {}})).await;
    assert_eq!(list["total"], 1);
}
