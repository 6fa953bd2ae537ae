//! The `chroma` step kind: ChromaDB over its REST API (v2, falling back to v1 for old servers),
//! including an export/import of whole collections that Chroma itself does not offer.
//!
//! ```no_run
//! use cairn_steps::chroma::{ChromaAction, ChromaClient, ChromaTarget, run};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ChromaClient::new(ChromaTarget::new("http://localhost:8000"), reqwest::Client::new());
//! // The engine builds the action from the runbook's `chroma:` mapping.
//! let action: ChromaAction = serde_json::from_value(serde_json::json!({
//!     "export": {"collections": "all", "to": "/backups/chroma.jsonl"}
//! }))?;
//! let result = run(&client, &action, &CancellationToken::new()).await?;
//! println!("{} records in {}", result["records"], result["path"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Results, per action
//! | action | result |
//! |---|---|
//! | `heartbeat` | `{"nanosecond_heartbeat": n, "api": "v2"}` |
//! | `version` | `{"version": "1.0.0", "api": "v2"}` |
//! | `list` | `{"collections": [{"name", "id", "count", "metadata", "dimension", "configuration"}], "total": n}` |
//! | `count` | `{"count": n}` |
//! | `create` | `{"name", "id", "metadata", "configuration", "dimension"}` (the existing one under `get_or_create`) |
//! | `delete` | `{"name", "deleted": bool}` (false: it did not exist and `missing_ok` was set) |
//! | `add`, `upsert` | `{"collection", "records": n}` |
//! | `get` | Chroma's answer (`ids`, `embeddings`, `metadatas`, `documents`, `include`, ...) plus `"count": n` |
//! | `query` | Chroma's answer: `ids`, `distances`, ... as one list per query embedding |
//! | `export` | `{"path", "collections": [{"name", "count", "dimension"}], "records": n, "bytes": n}` |
//! | `import` | `{"collections": [{"name", "expected", "count", "dimension"}], "records": n}` |
//!
//! `dimension` is null for a collection that never held a record. Adding an id that exists
//! changes nothing (Chroma's rule): use `upsert` to replace.
//!
//! # The export file
//! JSON Lines. Per collection one header line, then one line per record; one closing line:
//! ```text
//! {"type":"collection","name":"memories","id":"…","metadata":{…},"configuration":{"hnsw":{…}},"count":2,"dimension":384}
//! {"type":"record","collection":"memories","id":"m1","embedding":[0.1,…],"metadata":{…},"document":"…"}
//! {"type":"end","collections":1,"records":2}
//! ```
//! It is written to `TO.partial`, fsynced and renamed to `TO`, so a crashed export never looks
//! complete; the closing line lets import tell a cut file from a whole one. Import checks the
//! whole file before it changes anything, then verifies each collection's count and embedding
//! dimension against its header.
//!
//! # Errors
//! Chroma's `{"error", "message"}` answers become one line naming the action and collection;
//! a dimension mismatch mentions MEM-005. Transport errors are those of [`crate::http`].

mod actions;
mod client;
mod export;
mod file;
mod import;

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::error::StepError;
pub use client::ChromaClient;

/// Where a Chroma server is and which tenant/database to use.
#[derive(Clone)]
pub struct ChromaTarget {
    /// e.g. `http://localhost:8000` (a path prefix behind a proxy is kept).
    pub url: String,
    pub tenant: String,
    pub database: String,
    /// Sent as `Authorization: Bearer` and as `x-chroma-token`, which Chroma's token auth reads.
    pub token: Option<String>,
}

impl ChromaTarget {
    /// `default_tenant` / `default_database`, no token.
    pub fn new(url: impl Into<String>) -> Self {
        ChromaTarget {
            url: url.into(),
            tenant: "default_tenant".to_owned(),
            database: "default_database".to_owned(),
            token: None,
        }
    }
}

// Hand-written so that the token never reaches a log.
impl std::fmt::Debug for ChromaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromaTarget")
            .field("url", &cairn_url::redact(&self.url))
            .field("tenant", &self.tenant)
            .field("database", &self.database)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// One Chroma call, externally tagged: `{"count": {"collection": "memories"}}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ChromaAction {
    Heartbeat {},
    Version {},
    /// Every collection with its record count.
    List {},
    Count {
        collection: String,
    },
    Create {
        name: String,
        metadata: Option<Map<String, Value>>,
        hnsw: Option<Hnsw>,
        /// Default true: an existing collection is returned as it is (its settings unchanged).
        get_or_create: Option<bool>,
    },
    Delete {
        name: String,
        missing_ok: Option<bool>,
    },
    Add(Records),
    Upsert(Records),
    Get {
        collection: String,
        ids: Option<Vec<String>>,
        r#where: Option<Value>,
        limit: Option<u32>,
        offset: Option<u32>,
        include: Option<Vec<String>>,
    },
    Query {
        collection: String,
        query_embeddings: Vec<Vec<f32>>,
        n_results: Option<u32>,
        r#where: Option<Value>,
        include: Option<Vec<String>>,
    },
    Export {
        collections: Collections,
        to: PathBuf,
        /// Records per `get` page: default 500, capped by the server's max_batch_size.
        batch_size: Option<u32>,
    },
    Import {
        from: PathBuf,
        /// Only these collections of the file (default: all).
        collections: Option<Vec<String>>,
        /// Delete each collection before importing it (default false: upsert into it).
        replace: Option<bool>,
        /// Records per upsert: default 500, capped by the server's max_batch_size.
        batch_size: Option<u32>,
    },
}

/// Records to add or upsert; embeddings are always explicit (Chroma would otherwise try to
/// download an embedding model).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Records {
    pub collection: String,
    pub ids: Vec<String>,
    pub embeddings: Vec<Vec<f32>>,
    pub metadatas: Option<Vec<Value>>,
    pub documents: Option<Vec<Option<String>>>,
}

/// HNSW index settings of a new collection. Names follow the seed manual's `hnsw:*` metadata
/// keys; Chroma's own configuration names are accepted as aliases.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Hnsw {
    /// `cosine`, `l2` or `ip`.
    pub space: Option<String>,
    #[serde(alias = "ef_construction")]
    pub construction_ef: Option<u32>,
    #[serde(alias = "ef_search")]
    pub search_ef: Option<u32>,
    #[serde(alias = "M", alias = "m")]
    pub max_neighbors: Option<u32>,
    pub num_threads: Option<u32>,
    pub batch_size: Option<u32>,
    pub sync_threshold: Option<u32>,
    pub resize_factor: Option<f64>,
}

/// `"all"` or a list of collection names.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(try_from = "CollectionsRepr")]
pub enum Collections {
    All,
    Named(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CollectionsRepr {
    Word(String),
    List(Vec<String>),
}

impl TryFrom<CollectionsRepr> for Collections {
    type Error = String;
    fn try_from(repr: CollectionsRepr) -> Result<Self, String> {
        match repr {
            CollectionsRepr::Word(word) if word == "all" => Ok(Collections::All),
            CollectionsRepr::Word(word) => Err(format!(
                "`collections` is \"all\" or a list of names, not \"{word}\" (write [{word}])"
            )),
            CollectionsRepr::List(names) => Ok(Collections::Named(names)),
        }
    }
}

impl ChromaAction {
    /// True for the actions `--probe` may run for real: they change nothing anywhere.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            ChromaAction::Heartbeat {}
                | ChromaAction::Version {}
                | ChromaAction::List {}
                | ChromaAction::Count { .. }
                | ChromaAction::Get { .. }
                | ChromaAction::Query { .. }
        )
    }

    /// The action's key in the runbook.
    pub fn name(&self) -> &'static str {
        match self {
            ChromaAction::Heartbeat {} => "heartbeat",
            ChromaAction::Version {} => "version",
            ChromaAction::List {} => "list",
            ChromaAction::Count { .. } => "count",
            ChromaAction::Create { .. } => "create",
            ChromaAction::Delete { .. } => "delete",
            ChromaAction::Add(_) => "add",
            ChromaAction::Upsert(_) => "upsert",
            ChromaAction::Get { .. } => "get",
            ChromaAction::Query { .. } => "query",
            ChromaAction::Export { .. } => "export",
            ChromaAction::Import { .. } => "import",
        }
    }
}

/// Performs `action`; see the module docs for each result.
pub async fn run(
    client: &ChromaClient,
    action: &ChromaAction,
    cancel: &CancellationToken,
) -> Result<Value, StepError> {
    let work = async {
        match action {
            ChromaAction::Export {
                collections,
                to,
                batch_size,
            } => export::export(client, collections, to, *batch_size).await,
            ChromaAction::Import {
                from,
                collections,
                replace,
                batch_size,
            } => {
                import::import(
                    client,
                    from,
                    collections.as_deref(),
                    replace.unwrap_or(false),
                    *batch_size,
                )
                .await
            }
            other => actions::run(client, other).await,
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = cancel.cancelled() => Err(StepError::Cancelled { result: None }),
    };
    if outcome.is_err()
        && let ChromaAction::Export { to, .. } = action
    {
        // Whatever stopped the export, its half-written file is garbage (and never mistaken for
        // a backup: it does not carry the final name).
        let _ = std::fs::remove_file(file::partial_path(to));
    }
    outcome
}

/// Records per request: `requested` (default 500), at most what the server accepts.
fn page_size(requested: Option<u32>, server_max: Option<usize>) -> Result<usize, StepError> {
    let wanted = match requested {
        Some(0) => return Err(StepError::setup("`batch_size` must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => 500,
    };
    Ok(server_max.map_or(wanted, |max| wanted.min(max.max(1))))
}

/// The hint appended to every dimension error: the seed manual's code for it.
const MEM_005: &str = "MEM-005 vector dimension mismatch: check embedding model consistency";
