//! Import: check the whole file, then create and upsert collection by collection and verify
//! each against its header.

use std::path::Path;

use serde_json::{Value, json};

use super::client::{Api, ChromaClient, CollectionInfo};
use super::file::{Header, Line, Reader, Record};
use super::{MEM_005, page_size};
use crate::error::StepError;

/// One collection of the file, as the first pass found it.
struct Section {
    header: Header,
    /// The header's dimension, or the records' when the header has none.
    dimension: Option<u64>,
}

pub(super) async fn import(
    client: &ChromaClient,
    from: &Path,
    only: Option<&[String]>,
    replace: bool,
    batch_size: Option<u32>,
) -> Result<Value, StepError> {
    // A cut or damaged file must fail before `replace` has deleted anything.
    let sections = scan(from).await?;
    if let Some(only) = only {
        for name in only {
            if !sections.iter().any(|s| &s.header.name == name) {
                let names: Vec<&str> = sections.iter().map(|s| s.header.name.as_str()).collect();
                return Err(StepError::setup(format!(
                    "collection `{name}` is not in {} (it holds: {})",
                    from.display(),
                    names.join(", ")
                )));
            }
        }
    }
    let selected = |name: &str| only.is_none_or(|only| only.iter().any(|n| n == name));
    let page = page_size(batch_size, client.max_batch_size().await?)?;
    let api = client.api().await?;

    // Dimension conflicts with what is already there, all found before the first write.
    if !replace {
        for section in sections.iter().filter(|s| selected(&s.header.name)) {
            if let Some(existing) = client.find_collection(&section.header.name).await? {
                check_dimension(&existing, section, "cannot import into it")?;
            }
        }
    }

    let mut reader = Reader::open(from).await?;
    let mut current: Option<(&Section, CollectionInfo)> = None;
    let mut batch: Vec<Record> = Vec::new();
    let mut summary = Vec::new();
    let mut records: u64 = 0;
    while let Some((_, line)) = reader.next().await? {
        match line {
            Line::Collection(header) => {
                if let Some((section, info)) = current.take() {
                    summary.push(finish(client, section, &info, &mut batch).await?);
                }
                if !selected(&header.name) {
                    continue;
                }
                let section = sections
                    .iter()
                    .find(|s| s.header.name == header.name)
                    .ok_or_else(|| reader.error("the file changed while it was being imported"))?;
                if replace {
                    client.delete(&header.name).await?;
                }
                // An old (v1) server's configuration format differs; its metadata carries hnsw:*.
                let configuration = if api == Api::V2 {
                    section.header.configuration.as_ref()
                } else {
                    None
                };
                let info = client
                    .create(
                        &header.name,
                        section.header.metadata.as_ref(),
                        configuration,
                        true,
                    )
                    .await?;
                check_dimension(&info, section, "cannot import into it")?;
                current = Some((section, info));
            }
            Line::Record(record) => {
                let Some((_, info)) = &current else { continue };
                batch.push(record);
                records += 1;
                if batch.len() >= page {
                    upsert(client, info, &mut batch).await?;
                }
            }
            Line::End(_) => break,
        }
    }
    if let Some((section, info)) = current.take() {
        summary.push(finish(client, section, &info, &mut batch).await?);
    }
    tracing::info!(path = %from.display(), collections = summary.len(), records, "chroma import done");
    Ok(json!({"collections": summary, "records": records}))
}

async fn upsert(
    client: &ChromaClient,
    info: &CollectionInfo,
    batch: &mut Vec<Record>,
) -> Result<(), StepError> {
    if batch.is_empty() {
        return Ok(());
    }
    let body = json!({
        "ids": batch.iter().map(|r| &r.id).collect::<Vec<_>>(),
        "embeddings": batch.iter().map(|r| &r.embedding).collect::<Vec<_>>(),
        "metadatas": batch.iter().map(|r| &r.metadata).collect::<Vec<_>>(),
        "documents": batch.iter().map(|r| &r.document).collect::<Vec<_>>(),
    });
    client.records(info, "upsert", &body).await?;
    batch.clear();
    Ok(())
}

/// Sends the last batch, then holds the collection to its header: count and dimension.
async fn finish(
    client: &ChromaClient,
    section: &Section,
    info: &CollectionInfo,
    batch: &mut Vec<Record>,
) -> Result<Value, StepError> {
    upsert(client, info, batch).await?;
    let name = &section.header.name;
    let expected = section.header.count;
    let count = client.count(info).await?;
    if count != expected {
        let why = if count > expected {
            "it held other records before: use `replace: true` to restore the file's content alone"
        } else {
            "records were lost on the way"
        };
        return Err(StepError::failed(
            format!(
                "import of `{name}`: the collection counts {count} records, the file has {expected} ({why})"
            ),
            None,
        ));
    }
    let now = client.collection(name).await?;
    check_dimension(&now, section, "after import")?;
    Ok(
        json!({"name": name, "expected": expected, "count": count, "dimension": now.dimension.or(section.dimension)}),
    )
}

fn check_dimension(info: &CollectionInfo, section: &Section, when: &str) -> Result<(), StepError> {
    match (info.dimension, section.dimension) {
        (Some(have), Some(want)) if have != want => Err(StepError::failed(
            format!(
                "collection `{}` has embeddings of dimension {have}, the file's have {want}: {when} [{MEM_005}]",
                info.name
            ),
            None,
        )),
        _ => Ok(()),
    }
}

/// The first pass: every line parses, records sit under their collection's header with its
/// dimension, each header's count matches, and the closing line is there and agrees.
async fn scan(path: &Path) -> Result<Vec<Section>, StepError> {
    let mut reader = Reader::open(path).await?;
    let mut sections: Vec<Section> = Vec::new();
    let mut seen: u64 = 0; // records of the last section
    let mut total: u64 = 0;
    let mut ended = false;
    while let Some((_, line)) = reader.next().await? {
        if ended {
            return Err(reader.error("content after the end line"));
        }
        match line {
            Line::Collection(header) => {
                close(&reader, sections.last(), seen)?;
                if sections.iter().any(|s| s.header.name == header.name) {
                    return Err(reader.error(format!("collection `{}` appears twice", header.name)));
                }
                sections.push(Section {
                    dimension: header.dimension,
                    header,
                });
                seen = 0;
            }
            Line::Record(record) => {
                let Some(section) = sections.last_mut() else {
                    return Err(reader.error("a record before any collection header"));
                };
                if record.collection != section.header.name {
                    return Err(reader.error(format!(
                        "record `{}` of `{}` inside collection `{}`",
                        record.id, record.collection, section.header.name
                    )));
                }
                let dimension = record.embedding.len() as u64;
                match section.dimension {
                    Some(d) if d != dimension => {
                        return Err(reader.error(format!(
                            "record `{}` has dimension {dimension}, collection `{}` has {d} [{MEM_005}]",
                            record.id, section.header.name
                        )));
                    }
                    Some(_) => {}
                    None => section.dimension = Some(dimension),
                }
                seen += 1;
                total += 1;
            }
            Line::End(end) => {
                close(&reader, sections.last(), seen)?;
                if end.collections != sections.len() as u64 || end.records != total {
                    return Err(reader.error(format!(
                        "the end line announces {} collections and {} records, the file holds {} and {total}",
                        end.collections,
                        end.records,
                        sections.len()
                    )));
                }
                ended = true;
            }
        }
    }
    if !ended {
        let place = sections.last().map_or_else(String::new, |s| {
            format!(
                " in collection `{}` after {seen} of {} records",
                s.header.name, s.header.count
            )
        });
        return Err(StepError::failed(
            format!(
                "{} is truncated: it stops{place} without its end line",
                path.display()
            ),
            None,
        ));
    }
    Ok(sections)
}

fn close(reader: &Reader, section: Option<&Section>, seen: u64) -> Result<(), StepError> {
    match section {
        Some(s) if s.header.count != seen => Err(reader.error(format!(
            "collection `{}` announces {} records but the file holds {seen}: it is truncated or damaged",
            s.header.name, s.header.count
        ))),
        _ => Ok(()),
    }
}
