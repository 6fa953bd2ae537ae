//! The HTTP side of the Chroma step: endpoints per API version, auth headers, error answers.

use std::sync::Arc;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::{ChromaTarget, MEM_005};
use crate::error::StepError;
use crate::http::describe_error;

/// Which REST API the server speaks. Today's Chroma answers 410 on v1; old ones 404 on v2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Api {
    V1,
    V2,
}

impl Api {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Api::V1 => "v1",
            Api::V2 => "v2",
        }
    }
}

/// A collection as the server describes it.
#[derive(Deserialize, Debug, Clone)]
pub(crate) struct CollectionInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, alias = "configuration")]
    pub configuration_json: Option<Value>,
    #[serde(default)]
    pub dimension: Option<u64>,
}

/// A connection to one Chroma target, shared by the steps of a run (cloning shares it).
/// The API version and the server's batch limit are asked once, on first use.
#[derive(Clone)]
pub struct ChromaClient {
    inner: Arc<Inner>,
}

struct Inner {
    target: ChromaTarget,
    http: reqwest::Client,
    api: OnceCell<Api>,
    max_batch: OnceCell<Option<usize>>,
}

impl ChromaClient {
    /// `http` is typically `HttpClients::client(false, true)` of the run.
    pub fn new(target: ChromaTarget, http: reqwest::Client) -> Self {
        let inner = Inner {
            target,
            http,
            api: OnceCell::new(),
            max_batch: OnceCell::new(),
        };
        ChromaClient {
            inner: Arc::new(inner),
        }
    }

    pub fn target(&self) -> &ChromaTarget {
        &self.inner.target
    }

    /// Asks `/api/v2/heartbeat`, then `/api/v1/heartbeat` if v2 is unknown (404).
    pub(crate) async fn heartbeat(&self) -> Result<(Api, Value), StepError> {
        let (status, body) = self
            .send(Method::GET, self.url(Api::V2, &["heartbeat"])?, None)
            .await?;
        let (api, body) = if status == StatusCode::NOT_FOUND {
            let (status, body) = self
                .send(Method::GET, self.url(Api::V1, &["heartbeat"])?, None)
                .await?;
            (Api::V1, ok_or_error(status, body, "heartbeat")?)
        } else {
            (Api::V2, ok_or_error(status, body, "heartbeat")?)
        };
        let _ = self.inner.api.set(api);
        Ok((api, body))
    }

    pub(crate) async fn api(&self) -> Result<Api, StepError> {
        if let Some(api) = self.inner.api.get() {
            return Ok(*api);
        }
        Ok(self.heartbeat().await?.0)
    }

    /// `/api/pre-flight-checks`' max_batch_size; None when the server does not say.
    pub(crate) async fn max_batch_size(&self) -> Result<Option<usize>, StepError> {
        let api = self.api().await?;
        let max = self
            .inner
            .max_batch
            .get_or_try_init(|| async {
                let (status, body) = self
                    .send(Method::GET, self.url(api, &["pre-flight-checks"])?, None)
                    .await?;
                let max = if status.is_success() {
                    body.get("max_batch_size").and_then(Value::as_u64)
                } else {
                    None
                };
                Ok::<_, StepError>(max.and_then(|m| usize::try_from(m).ok()))
            })
            .await?;
        Ok(*max)
    }

    /// `base/api/vN/<segments>`, each segment percent-encoded.
    pub(crate) fn url(&self, api: Api, segments: &[&str]) -> Result<Url, StepError> {
        let raw = &self.inner.target.url;
        let mut url = Url::parse(raw).map_err(|e| {
            StepError::setup(format!(
                "invalid Chroma URL `{}`: {e}",
                cairn_url::redact(raw)
            ))
        })?;
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                StepError::setup(format!("invalid Chroma URL `{}`", cairn_url::redact(raw)))
            })?;
            path.pop_if_empty()
                .extend(["api", api.as_str()])
                .extend(segments);
        }
        Ok(url)
    }

    /// The collections endpoint, scoped to the target's tenant and database.
    pub(crate) async fn collections_url(&self, rest: &[&str]) -> Result<Url, StepError> {
        let api = self.api().await?;
        let target = &self.inner.target;
        match api {
            Api::V2 => {
                let mut segments = vec![
                    "tenants",
                    target.tenant.as_str(),
                    "databases",
                    target.database.as_str(),
                    "collections",
                ];
                segments.extend(rest);
                self.url(api, &segments)
            }
            Api::V1 => {
                let mut segments = vec!["collections"];
                segments.extend(rest);
                let mut url = self.url(api, &segments)?;
                url.query_pairs_mut()
                    .append_pair("tenant", &target.tenant)
                    .append_pair("database", &target.database);
                Ok(url)
            }
        }
    }

    /// One request; any HTTP status comes back, transport failures are errors.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), StepError> {
        let shown = cairn_url::redact(url.as_str());
        let mut request = self.inner.http.request(method.clone(), url);
        if let Some(token) = &self.inner.target.token {
            request = request.bearer_auth(token).header("x-chroma-token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let failed = |e: reqwest::Error| describe_error(&e, method.as_str(), &shown, None);
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            // A proxy's HTML error page is not JSON: keep its text for the message.
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, value))
    }

    /// The collection named `name`, or an "unknown collection" error.
    pub(crate) async fn collection(&self, name: &str) -> Result<CollectionInfo, StepError> {
        self.find_collection(name).await?.ok_or_else(|| {
            let target = &self.inner.target;
            StepError::failed(
                format!(
                    "unknown collection `{name}` in Chroma {}/{}",
                    target.tenant, target.database
                ),
                None,
            )
        })
    }

    /// The collection named `name`, or None when it does not exist.
    pub(crate) async fn find_collection(
        &self,
        name: &str,
    ) -> Result<Option<CollectionInfo>, StepError> {
        let (status, body) = self
            .send(Method::GET, self.collections_url(&[name]).await?, None)
            .await?;
        if is_not_found(status, &body) {
            return Ok(None);
        }
        parse(
            ok_or_error(status, body, &format!("reading collection `{name}`"))?,
            "collection",
        )
        .map(Some)
    }

    pub(crate) async fn create(
        &self,
        name: &str,
        metadata: Option<&Map<String, Value>>,
        configuration: Option<&Value>,
        get_or_create: bool,
    ) -> Result<CollectionInfo, StepError> {
        let mut body = json!({"name": name, "get_or_create": get_or_create});
        if let Some(metadata) = metadata.filter(|m| !m.is_empty()) {
            body["metadata"] = Value::Object(metadata.clone());
        }
        if let Some(configuration) = configuration.filter(|c| !c.is_null()) {
            body["configuration"] = configuration.clone();
        }
        let (status, answer) = self
            .send(Method::POST, self.collections_url(&[]).await?, Some(&body))
            .await?;
        parse(
            ok_or_error(status, answer, &format!("creating collection `{name}`"))?,
            "collection",
        )
    }

    /// Deletes `name`; false when it did not exist.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, StepError> {
        let (status, body) = self
            .send(Method::DELETE, self.collections_url(&[name]).await?, None)
            .await?;
        if is_not_found(status, &body) {
            return Ok(false);
        }
        ok_or_error(status, body, &format!("deleting collection `{name}`"))?;
        Ok(true)
    }

    pub(crate) async fn count(&self, collection: &CollectionInfo) -> Result<u64, StepError> {
        self.count_if_exists(collection).await?.ok_or_else(|| {
            StepError::failed(
                format!("collection `{}` was deleted while in use", collection.name),
                None,
            )
        })
    }

    /// The record count, or None when the collection has gone (deleted since it was listed).
    pub(crate) async fn count_if_exists(
        &self,
        collection: &CollectionInfo,
    ) -> Result<Option<u64>, StepError> {
        let url = self.collections_url(&[&collection.id, "count"]).await?;
        let (status, body) = self.send(Method::GET, url, None).await?;
        if is_not_found(status, &body) {
            return Ok(None);
        }
        // A count racing the deletion finds the collection but not its segments, and Chroma
        // answers 412 "Missing metadata segment" rather than 404: ask again whether it exists.
        if !status.is_success() && !self.still_exists(collection).await? {
            return Ok(None);
        }
        let context = format!("counting collection `{}`", collection.name);
        let body = ok_or_error(status, body, &context)?;
        let count = body.as_u64().ok_or_else(|| {
            StepError::failed(
                format!("{context}: Chroma answered {body}, not a number"),
                None,
            )
        })?;
        Ok(Some(count))
    }

    /// Whether this very collection (same id, not a namesake created since) is still there.
    async fn still_exists(&self, collection: &CollectionInfo) -> Result<bool, StepError> {
        let now = self.find_collection(&collection.name).await?;
        Ok(now.is_some_and(|now| now.id == collection.id))
    }

    /// A record operation (`add`, `upsert`, `get`, `query`) on one collection.
    pub(crate) async fn records(
        &self,
        collection: &CollectionInfo,
        op: &str,
        body: &Value,
    ) -> Result<Value, StepError> {
        let url = self.collections_url(&[&collection.id, op]).await?;
        let (status, answer) = self.send(Method::POST, url, Some(body)).await?;
        ok_or_error(
            status,
            answer,
            &format!("{op} on collection `{}`", collection.name),
        )
    }

    /// Every collection of the database, paging through the list.
    pub(crate) async fn list(&self) -> Result<Vec<CollectionInfo>, StepError> {
        const PAGE: usize = 100;
        let mut all = Vec::new();
        loop {
            let mut url = self.collections_url(&[]).await?;
            url.query_pairs_mut()
                .append_pair("limit", &PAGE.to_string())
                .append_pair("offset", &all.len().to_string());
            let (status, body) = self.send(Method::GET, url, None).await?;
            let page: Vec<CollectionInfo> = parse(
                ok_or_error(status, body, "listing collections")?,
                "collection list",
            )?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }
}

fn is_not_found(status: StatusCode, body: &Value) -> bool {
    // Chroma 0.5 answered a missing collection with 500/400 and kind NotFoundError; 1.x with 404.
    status == StatusCode::NOT_FOUND
        || body.get("error").and_then(Value::as_str) == Some("NotFoundError")
}

/// The body of a 2xx answer; anything else becomes one line: what we did, Chroma's words, status.
pub(crate) fn ok_or_error(
    status: StatusCode,
    body: Value,
    context: &str,
) -> Result<Value, StepError> {
    if status.is_success() {
        return Ok(body);
    }
    let kind = body.get("error").and_then(Value::as_str);
    let message = match (&body, body.get("message").and_then(Value::as_str)) {
        (_, Some(message)) => message.to_owned(),
        (Value::String(text), None) => text.chars().take(200).collect(),
        (other, None) => other
            .get("detail")
            .map_or_else(|| other.to_string(), Value::to_string),
    };
    let mut line = format!(
        "Chroma {context} failed: {message} (HTTP {}",
        status.as_u16()
    );
    if let Some(kind) = kind {
        line.push_str(&format!(", {kind}"));
    }
    line.push(')');
    if message.contains("dimension") {
        line.push_str(&format!(" [{MEM_005}]"));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        line.push_str(" [check the target's token]");
    }
    Err(StepError::failed(line, Some(body)))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    value: Value,
    what: &str,
) -> Result<T, StepError> {
    serde_json::from_value(value)
        .map_err(|e| StepError::failed(format!("unexpected {what} from Chroma: {e}"), None))
}
