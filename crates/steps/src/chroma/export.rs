//! Export: page through `get` and write JSON Lines, verified, atomically renamed into place.

use std::path::Path;

use serde::Deserialize;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::client::{ChromaClient, CollectionInfo, parse};
use super::file::{EndOut, HeaderOut, RecordOut, partial_path};
use super::{Collections, MEM_005, page_size};
use crate::error::StepError;

/// One `get` page with everything included.
#[derive(Deserialize)]
struct Page {
    ids: Vec<String>,
    #[serde(default)]
    embeddings: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    metadatas: Option<Vec<Option<Map<String, Value>>>>,
    #[serde(default)]
    documents: Option<Vec<Option<String>>>,
}

struct Output {
    path: String,
    file: BufWriter<tokio::fs::File>,
    bytes: u64,
}

impl Output {
    async fn line(&mut self, value: &impl Serialize) -> Result<(), StepError> {
        let mut line = serde_json::to_vec(value).map_err(|e| {
            StepError::failed(format!("cannot encode a line of {}: {e}", self.path), None)
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .await
            .map_err(|e| self.io_error(&e))?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    fn io_error(&self, e: &std::io::Error) -> StepError {
        StepError::failed(format!("cannot write {}: {e}", self.path), None)
    }
}

pub(super) async fn export(
    client: &ChromaClient,
    collections: &Collections,
    to: &Path,
    batch_size: Option<u32>,
) -> Result<Value, StepError> {
    let infos = match collections {
        Collections::All => client.list().await?,
        Collections::Named(names) => {
            let mut infos: Vec<CollectionInfo> = Vec::new();
            for name in names {
                if !infos.iter().any(|info| &info.name == name) {
                    infos.push(client.collection(name).await?);
                }
            }
            infos
        }
    };
    let page = page_size(batch_size, client.max_batch_size().await?)?;
    let partial = partial_path(to);
    let file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| StepError::setup(format!("cannot create {}: {e}", partial.display())))?;
    let mut out = Output {
        path: partial.display().to_string(),
        file: BufWriter::with_capacity(1 << 20, file),
        bytes: 0,
    };

    let mut summary = Vec::new();
    let mut records = 0;
    for info in &infos {
        let (count, dimension) = export_collection(client, info, page, &mut out).await?;
        records += count;
        summary.push(json!({"name": info.name, "count": count, "dimension": dimension}));
    }
    out.line(&EndOut {
        kind: "end",
        collections: infos.len(),
        records,
    })
    .await?;

    // Durable before it takes its final name: a crash leaves either no file or a whole one.
    out.file.flush().await.map_err(|e| out.io_error(&e))?;
    out.file
        .get_ref()
        .sync_all()
        .await
        .map_err(|e| out.io_error(&e))?;
    let bytes = out.bytes;
    drop(out);
    tokio::fs::rename(&partial, to).await.map_err(|e| {
        StepError::failed(
            format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                to.display()
            ),
            None,
        )
    })?;
    sync_dir(to).await;
    tracing::info!(path = %to.display(), collections = infos.len(), records, bytes, "chroma export written");
    Ok(
        json!({"path": to.display().to_string(), "collections": summary, "records": records, "bytes": bytes}),
    )
}

/// Writes one collection's header and records; returns (records written, dimension).
async fn export_collection(
    client: &ChromaClient,
    info: &CollectionInfo,
    page: usize,
    out: &mut Output,
) -> Result<(u64, Option<u64>), StepError> {
    let count = client.count(info).await?;
    let mut batch = fetch(client, info, 0, page).await?;
    // An old server may not report the dimension: the first record tells it.
    let dimension = info.dimension.or_else(|| {
        batch
            .embeddings
            .as_ref()
            .and_then(|e| e.first())
            .map(|e| e.len() as u64)
    });
    let header = HeaderOut {
        kind: "collection",
        name: &info.name,
        id: &info.id,
        metadata: &info.metadata,
        configuration: &info.configuration_json,
        count,
        dimension,
    };
    out.line(&header).await?;
    let mut written: u64 = 0;
    loop {
        let fetched = batch.ids.len();
        let embeddings = batch.embeddings.as_deref().unwrap_or_default();
        if embeddings.len() != fetched {
            return Err(StepError::failed(
                format!(
                    "Chroma returned {} embeddings for {fetched} ids of `{}`",
                    embeddings.len(),
                    info.name
                ),
                None,
            ));
        }
        for (i, (id, embedding)) in batch.ids.iter().zip(embeddings).enumerate() {
            if dimension.is_some_and(|d| d != embedding.len() as u64) {
                return Err(StepError::failed(
                    format!(
                        "record `{id}` of `{}` has dimension {}, the collection {} [{MEM_005}]",
                        info.name,
                        embedding.len(),
                        dimension.map_or_else(String::new, |d| d.to_string())
                    ),
                    None,
                ));
            }
            let metadata = batch
                .metadatas
                .as_ref()
                .and_then(|m| m.get(i))
                .and_then(Option::as_ref);
            let document = batch
                .documents
                .as_ref()
                .and_then(|d| d.get(i))
                .and_then(|d| d.as_deref());
            let record = RecordOut {
                kind: "record",
                collection: &info.name,
                id,
                embedding,
                metadata,
                document,
            };
            out.line(&record).await?;
        }
        written += fetched as u64;
        if fetched < page {
            break;
        }
        batch = fetch(client, info, written, page).await?;
    }
    if written != count {
        return Err(StepError::failed(
            format!(
                "export of `{}` read {written} records but the collection counts {count}: \
                 was it written to during the export? Nothing was kept; run the export again",
                info.name
            ),
            None,
        ));
    }
    Ok((written, dimension))
}

async fn fetch(
    client: &ChromaClient,
    info: &CollectionInfo,
    offset: u64,
    limit: usize,
) -> Result<Page, StepError> {
    let body = json!({"limit": limit, "offset": offset, "include": ["embeddings", "metadatas", "documents"]});
    parse(client.records(info, "get", &body).await?, "get page")
}

/// fsync the directory so that the rename itself survives a crash. Best effort: some
/// filesystems refuse to open a directory for syncing, and the data is already durable.
async fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let synced =
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await;
    if let Ok(Err(e)) = synced {
        tracing::warn!(error = %e, "could not fsync the export's directory");
    }
}
