//! The single-call actions: heartbeat, version, list, count, create, delete, add, upsert, get, query.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Api, ChromaClient, CollectionInfo, ok_or_error};
use super::{ChromaAction, Hnsw, MEM_005, Records};
use crate::error::StepError;

pub(super) async fn run(client: &ChromaClient, action: &ChromaAction) -> Result<Value, StepError> {
    match action {
        ChromaAction::Heartbeat {} => {
            let (api, body) = client.heartbeat().await?;
            // Chroma spells the key with a space; ours is usable in a template.
            let beat = body
                .get("nanosecond heartbeat")
                .or_else(|| body.get("nanosecond_heartbeat"));
            Ok(
                json!({"nanosecond_heartbeat": beat.cloned().unwrap_or(Value::Null), "api": api.as_str()}),
            )
        }
        ChromaAction::Version {} => {
            let api = client.api().await?;
            let (status, body) = client
                .send(Method::GET, client.url(api, &["version"])?, None)
                .await?;
            Ok(json!({"version": ok_or_error(status, body, "version")?, "api": api.as_str()}))
        }
        ChromaAction::List {} => {
            let mut collections = Vec::new();
            for info in client.list().await? {
                // One deleted between the listing and its count is simply no longer there.
                if let Some(count) = client.count_if_exists(&info).await? {
                    collections.push(describe(&info, Some(count)));
                }
            }
            Ok(json!({"total": collections.len(), "collections": collections}))
        }
        ChromaAction::Count { collection } => {
            let info = client.collection(collection).await?;
            Ok(json!({"count": client.count(&info).await?}))
        }
        ChromaAction::Create {
            name,
            metadata,
            hnsw,
            get_or_create,
        } => {
            let api = client.api().await?;
            let (metadata, configuration) = hnsw_settings(api, metadata.as_ref(), hnsw.as_ref())?;
            let info = client
                .create(
                    name,
                    metadata.as_ref(),
                    configuration.as_ref(),
                    get_or_create.unwrap_or(true),
                )
                .await?;
            Ok(describe(&info, None))
        }
        ChromaAction::Delete { name, missing_ok } => {
            let deleted = client.delete(name).await?;
            if !deleted && !missing_ok.unwrap_or(false) {
                return Err(StepError::failed(
                    format!(
                        "cannot delete unknown collection `{name}` (set `missing_ok: true` to accept that)"
                    ),
                    None,
                ));
            }
            Ok(json!({"name": name, "deleted": deleted}))
        }
        ChromaAction::Add(records) => write(client, "add", records).await,
        ChromaAction::Upsert(records) => write(client, "upsert", records).await,
        ChromaAction::Get {
            collection,
            ids,
            r#where,
            limit,
            offset,
            include,
        } => {
            let info = client.collection(collection).await?;
            let mut body = Map::new();
            insert(&mut body, "ids", ids);
            insert(&mut body, "where", r#where);
            insert(&mut body, "limit", limit);
            insert(&mut body, "offset", offset);
            insert(&mut body, "include", include);
            let mut answer = client.records(&info, "get", &Value::Object(body)).await?;
            let count = answer
                .get("ids")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if let Some(map) = answer.as_object_mut() {
                map.insert("count".to_owned(), count.into());
            }
            Ok(answer)
        }
        ChromaAction::Query {
            collection,
            query_embeddings,
            n_results,
            r#where,
            include,
        } => {
            let info = client.collection(collection).await?;
            check_dimension(&info, query_embeddings, "query")?;
            let mut body = Map::new();
            body.insert("query_embeddings".to_owned(), json!(query_embeddings));
            insert(&mut body, "n_results", n_results);
            insert(&mut body, "where", r#where);
            insert(&mut body, "include", include);
            client.records(&info, "query", &Value::Object(body)).await
        }
        ChromaAction::Export { .. } | ChromaAction::Import { .. } => Err(StepError::setup(
            "export and import are not single-call actions",
        )),
    }
}

/// The result shape of `create` and of each `list` entry.
fn describe(info: &CollectionInfo, count: Option<u64>) -> Value {
    let mut value = json!({
        "name": info.name,
        "id": info.id,
        "metadata": info.metadata,
        "configuration": info.configuration_json,
        "dimension": info.dimension,
    });
    if let (Some(count), Some(map)) = (count, value.as_object_mut()) {
        map.insert("count".to_owned(), count.into());
    }
    value
}

fn insert<T: serde::Serialize>(body: &mut Map<String, Value>, key: &str, value: &Option<T>) {
    if let Some(value) = value {
        body.insert(key.to_owned(), json!(value));
    }
}

/// A new collection's (metadata, configuration).
type Settings = (Option<Map<String, Value>>, Option<Value>);

/// v2 takes HNSW settings as `configuration.hnsw`; v1 servers read `hnsw:*` metadata keys.
fn hnsw_settings(
    api: Api,
    metadata: Option<&Map<String, Value>>,
    hnsw: Option<&Hnsw>,
) -> Result<Settings, StepError> {
    let Some(hnsw) = hnsw else {
        return Ok((metadata.cloned(), None));
    };
    if let Some(space) = &hnsw.space
        && !matches!(space.as_str(), "cosine" | "l2" | "ip")
    {
        return Err(StepError::setup(format!(
            "unknown HNSW space `{space}` (expected cosine, l2 or ip)"
        )));
    }
    let settings = [
        ("space", "hnsw:space", json!(hnsw.space)),
        (
            "ef_construction",
            "hnsw:construction_ef",
            json!(hnsw.construction_ef),
        ),
        ("ef_search", "hnsw:search_ef", json!(hnsw.search_ef)),
        ("max_neighbors", "hnsw:M", json!(hnsw.max_neighbors)),
        ("num_threads", "hnsw:num_threads", json!(hnsw.num_threads)),
        ("batch_size", "hnsw:batch_size", json!(hnsw.batch_size)),
        (
            "sync_threshold",
            "hnsw:sync_threshold",
            json!(hnsw.sync_threshold),
        ),
        (
            "resize_factor",
            "hnsw:resize_factor",
            json!(hnsw.resize_factor),
        ),
    ];
    let set = settings
        .into_iter()
        .filter(|(_, _, value)| !value.is_null());
    match api {
        Api::V2 => {
            let config: Map<String, Value> =
                set.map(|(key, _, value)| (key.to_owned(), value)).collect();
            Ok((metadata.cloned(), Some(json!({"hnsw": config}))))
        }
        Api::V1 => {
            let mut metadata = metadata.cloned().unwrap_or_default();
            metadata.extend(set.map(|(_, key, value)| (key.to_owned(), value)));
            Ok((Some(metadata), None))
        }
    }
}

/// add/upsert, in batches the server accepts; shapes are checked before anything is sent.
async fn write(client: &ChromaClient, op: &str, records: &Records) -> Result<Value, StepError> {
    let n = records.ids.len();
    let lengths = [
        ("embeddings", Some(records.embeddings.len())),
        ("metadatas", records.metadatas.as_ref().map(Vec::len)),
        ("documents", records.documents.as_ref().map(Vec::len)),
    ];
    for (field, len) in lengths {
        if let Some(len) = len.filter(|len| *len != n) {
            return Err(StepError::setup(format!(
                "{op}: {n} ids but {len} {field}: give one per id"
            )));
        }
    }
    let info = client.collection(&records.collection).await?;
    check_dimension(&info, &records.embeddings, op)?;
    let batch = client.max_batch_size().await?.unwrap_or(n).max(1);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let mut body =
            json!({"ids": &records.ids[start..end], "embeddings": &records.embeddings[start..end]});
        if let Some(metadatas) = &records.metadatas {
            body["metadatas"] = json!(&metadatas[start..end]);
        }
        if let Some(documents) = &records.documents {
            body["documents"] = json!(&documents[start..end]);
        }
        client.records(&info, op, &body).await?;
    }
    Ok(json!({"collection": records.collection, "records": n}))
}

/// Catches a mismatch before the server does, with both numbers and the MEM-005 hint.
pub(super) fn check_dimension(
    info: &CollectionInfo,
    embeddings: &[Vec<f32>],
    op: &str,
) -> Result<(), StepError> {
    let expected = info.dimension.and_then(|d| usize::try_from(d).ok());
    let first = embeddings.first().map(Vec::len);
    let Some(expected) = expected.or(first) else {
        return Ok(());
    };
    if let Some((i, e)) = embeddings
        .iter()
        .enumerate()
        .find(|(_, e)| e.len() != expected)
    {
        return Err(StepError::failed(
            format!(
                "{op} on collection `{}`: embedding {i} has dimension {}, expected {expected} [{MEM_005}]",
                info.name,
                e.len()
            ),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_manual_hnsw() -> Hnsw {
        // The seed manual's settings: cosine, construction_ef 200, search_ef 100, M 16.
        let hnsw = json!({"space": "cosine", "construction_ef": 200, "search_ef": 100, "M": 16});
        serde_json::from_value(hnsw).expect("hnsw")
    }

    #[test]
    fn v2_gets_a_configuration() {
        let metadata = json!({"team": "memory"}).as_object().cloned();
        let (meta, config) =
            hnsw_settings(Api::V2, metadata.as_ref(), Some(&seed_manual_hnsw())).expect("valid");
        assert_eq!(meta, metadata);
        let expected = json!({"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 100, "max_neighbors": 16}});
        assert_eq!(config, Some(expected));
    }

    #[test]
    fn v1_gets_the_metadata_keys_of_the_seed_manual() {
        let (meta, config) =
            hnsw_settings(Api::V1, None, Some(&seed_manual_hnsw())).expect("valid");
        let expected = json!({"hnsw:space": "cosine", "hnsw:construction_ef": 200, "hnsw:search_ef": 100, "hnsw:M": 16});
        assert_eq!(meta.map(Value::Object), Some(expected));
        assert_eq!(config, None);
    }
}
