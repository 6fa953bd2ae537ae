//! The `http` step kind: one HTTP request, its response as JSON.
//!
//! ```no_run
//! use cairn_steps::http::{HttpClients, HttpSpec, run};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), cairn_steps::StepError> {
//! let clients = HttpClients::new(); // one per run: connections are pooled and reused
//! let spec = HttpSpec::new("GET", "http://localhost:8001/health");
//! let result = run(&clients, &spec, &CancellationToken::new()).await?;
//! assert_eq!(result["status"], 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Result
//! ```json
//! {"status": 200, "headers": {"content-type": "application/json"}, "body": "{\"ok\":true}",
//!  "body_truncated": false, "json": {"ok": true}, "url": "http://localhost:8001/health", "duration_ms": 12}
//! ```
//! - Every received status is `Ok`: judging it is the engine's `expect` (default: status < 400).
//! - `headers`: names lowercased; a header sent several times is joined with `, `.
//! - `body`: lossy UTF-8, at most [`BODY_CAP`] bytes; reading stops there and `body_truncated` is true.
//! - `json`: the body parsed as JSON, or null when it is not JSON (or was truncated).
//! - `url`: the final URL after redirects, without userinfo.
//!
//! # Errors
//! One line naming the URL (userinfo removed): connection refused, DNS lookup failed, TLS
//! certificate problem (with the `insecure: true` hint), too many redirects. A request that
//! outlives `timeout` is [`StepError::Timeout`]; without `timeout` only the step's own timeout
//! (enforced by the engine through cancellation) bounds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url, redirect};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::StepError;

/// The most response body kept in the result, in bytes (1 MiB).
pub const BODY_CAP: usize = 1024 * 1024;
/// Redirects followed before giving up, like curl's and browsers' limits.
pub const MAX_REDIRECTS: usize = 10;

/// One fully rendered HTTP request.
#[derive(Clone, Default)]
pub struct HttpSpec {
    /// GET, POST, PUT, DELETE, HEAD or PATCH (any case).
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Sent as the body with `content-type: application/json` (unless a header says otherwise).
    pub json: Option<Value>,
    /// Sent as-is; exclusive with `json`.
    pub body: Option<String>,
    /// Deadline for the whole exchange, connect to last body byte.
    pub timeout: Option<Duration>,
    /// Accept any server certificate (self-signed, expired, wrong host).
    pub insecure: bool,
    pub bearer: Option<String>,
    /// User name and optional password.
    pub basic: Option<(String, Option<String>)>,
    pub follow_redirects: bool,
}

impl HttpSpec {
    /// A request with no body, headers or auth that follows redirects.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        HttpSpec {
            method: method.into(),
            url: url.into(),
            follow_redirects: true,
            ..Default::default()
        }
    }
}

// Hand-written so that a stray `{:?}` never prints a credential.
impl std::fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSpec")
            .field("method", &self.method)
            .field("url", &cairn_url::redact(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("json", &self.json.is_some())
            .field("body", &self.body.as_ref().map(String::len))
            .field("timeout", &self.timeout)
            .field("insecure", &self.insecure)
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("follow_redirects", &self.follow_redirects)
            .finish()
    }
}

/// The HTTP clients of one run: one per (insecure, follow_redirects) combination, built on first
/// use, so that steps share connection pools. Cloning is cheap and shares the cache.
#[derive(Clone, Default)]
pub struct HttpClients {
    cache: Arc<Mutex<HashMap<(bool, bool), reqwest::Client>>>,
}

impl HttpClients {
    pub fn new() -> Self {
        Self::default()
    }

    /// The client for this combination (also what a Chroma target should use).
    pub fn client(
        &self,
        insecure: bool,
        follow_redirects: bool,
    ) -> Result<reqwest::Client, StepError> {
        // A panic elsewhere while holding the lock leaves the map intact: keep using it.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = cache.get(&(insecure, follow_redirects)) {
            return Ok(client.clone());
        }
        let policy = if follow_redirects {
            redirect::Policy::limited(MAX_REDIRECTS)
        } else {
            redirect::Policy::none()
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .redirect(policy)
            .tls_danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| {
                StepError::setup(format!("cannot build an HTTP client: {}", root_cause(&e)))
            })?;
        cache.insert((insecure, follow_redirects), client.clone());
        Ok(client)
    }
}

/// Sends the request and returns the response as JSON (see the module docs for its shape).
///
/// Redirects are followed here rather than by the client, so that the request's credentials
/// (bearer, basic, and every header of the spec) go only to the origin (scheme, host, port) of
/// the first URL: a hop to another origin is made without them. 301, 302 and 303 turn the
/// request into a GET without a body (HEAD stays HEAD); 307 and 308 repeat it as it was.
pub async fn run(
    clients: &HttpClients,
    spec: &HttpSpec,
    cancel: &CancellationToken,
) -> Result<Value, StepError> {
    let shown = cairn_url::redact(&spec.url);
    let request = prepare(spec, &shown)?;
    let client = clients.client(spec.insecure, false)?;
    let started = Instant::now();
    let exchange = async {
        let mut response = send(&client, spec, &request, started).await?;
        let status = response.status().as_u16();
        let headers = headers_json(response.headers());
        let url = cairn_url::redact(response.url().as_str());
        let mut body = Vec::new();
        let mut truncated = false;
        // Read chunk by chunk so that a huge body is not downloaded only to be thrown away.
        while let Some(chunk) = response.chunk().await? {
            let room = BODY_CAP - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, Exchange>((status, headers, url, body, truncated))
    };
    let (status, headers, url, body, truncated) = tokio::select! {
        outcome = exchange => outcome.map_err(|e| match e {
            Exchange::Http(e) => describe_error(&e, &spec.method, &shown, spec.timeout),
            Exchange::TooManyRedirects => StepError::failed(
                format!("too many redirects (more than {MAX_REDIRECTS}): {} {shown}", spec.method.to_ascii_uppercase()),
                None,
            ),
        })?,
        () = cancel.cancelled() => return Err(StepError::Cancelled { result: None }),
    };
    let parsed = if truncated || body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    Ok(json!({
        "status": status,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_truncated": truncated,
        "json": parsed,
        "url": url,
        "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// A request checked and ready to send, to its first URL.
struct Ready {
    method: Method,
    url: Url,
    headers: HeaderMap,
}

enum Exchange {
    Http(reqwest::Error),
    TooManyRedirects,
}

impl From<reqwest::Error> for Exchange {
    fn from(e: reqwest::Error) -> Self {
        Exchange::Http(e)
    }
}

fn prepare(spec: &HttpSpec, shown: &str) -> Result<Ready, StepError> {
    let method = match spec.method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "PATCH" => Method::PATCH,
        other => {
            return Err(StepError::setup(format!(
                "unsupported HTTP method `{other}` (expected GET, POST, PUT, DELETE, HEAD or PATCH)"
            )));
        }
    };
    let url = Url::parse(&spec.url)
        .map_err(|e| StepError::setup(format!("invalid URL `{shown}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::setup(format!(
            "invalid URL `{shown}`: the scheme must be http or https"
        )));
    }
    if spec.json.is_some() && spec.body.is_some() {
        return Err(StepError::setup(
            "an http step takes `json` or `body`, not both",
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| StepError::setup(format!("invalid HTTP header name `{name}`")))?;
        // The value may be a secret: name the header, never echo the value.
        let value = HeaderValue::from_str(value).map_err(|_| {
            StepError::setup(format!(
                "invalid value for HTTP header `{name}` (control characters?)"
            ))
        })?;
        headers.append(key, value);
    }
    Ok(Ready {
        method,
        url,
        headers,
    })
}

/// Sends the request, following redirects when asked; credentials only on the first origin.
async fn send(
    client: &reqwest::Client,
    spec: &HttpSpec,
    ready: &Ready,
    started: Instant,
) -> Result<reqwest::Response, Exchange> {
    let origin = ready.url.origin();
    let mut url = ready.url.clone();
    let mut method = ready.method.clone();
    let mut with_body = true;
    let mut hops = 0;
    loop {
        let mut request = client.request(method.clone(), url.clone());
        if url.origin() == origin {
            request = request.headers(ready.headers.clone());
            if let Some(token) = &spec.bearer {
                request = request.bearer_auth(token);
            }
            if let Some((user, password)) = &spec.basic {
                request = request.basic_auth(user, password.as_ref());
            }
        }
        if let Some(timeout) = spec.timeout {
            // One deadline for the whole exchange, redirects included.
            let left = timeout.saturating_sub(started.elapsed());
            request = request.timeout(left.max(Duration::from_millis(1)));
        }
        if with_body {
            if let Some(value) = &spec.json {
                request = request.json(value);
            } else if let Some(body) = &spec.body {
                request = request.body(body.clone());
            }
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let next = (spec.follow_redirects && matches!(status, 301 | 302 | 303 | 307 | 308))
            .then(|| response.headers().get(reqwest::header::LOCATION))
            .flatten()
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let Some(next) = next else {
            return Ok(response);
        };
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(Exchange::TooManyRedirects);
        }
        if matches!(status, 301..=303) {
            if method != Method::HEAD {
                method = Method::GET;
            }
            with_body = false;
        }
        url = next;
    }
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match map.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
            }
        }
    }
    Value::Object(map)
}

/// Why a URL is refused for a target: it would leave the target's origin or base path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OffTarget(pub String);

/// The URL of a request made on a target: `path` (already rendered, values percent-encoded) is
/// joined below the target's URL, or, when it is itself absolute, taken as it is. Either way the
/// result must keep the target's scheme, host and port and stay under its base path: a `.` or
/// `..` segment (also percent-encoded), or an absolute URL elsewhere, is refused.
pub fn on_target(target: &str, path: &str) -> Result<String, OffTarget> {
    let base = Url::parse(target).map_err(|e| {
        OffTarget(format!(
            "the target's URL `{}` is not valid: {e}",
            cairn_url::redact(target)
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(OffTarget(format!(
            "the target's URL `{}` is not http or https",
            cairn_url::redact(target)
        )));
    }
    let absolute = has_scheme(path);
    let relative = if absolute {
        None
    } else {
        Some(path.trim_start_matches('/'))
    };
    if let Some(rel) = relative {
        let path_part = rel.split(['?', '#']).next().unwrap_or_default();
        if let Some(seg) = path_part.split(['/', '\\']).find(|s| is_dot_segment(s)) {
            return Err(OffTarget(format!(
                "the path `{}` has a `{seg}` segment, which would leave the target's base path `{}`",
                shorten(rel),
                base.path()
            )));
        }
    }
    let base_path = if base.path().ends_with('/') {
        base.path().to_string()
    } else {
        format!("{}/", base.path())
    };
    let joined = match relative {
        Some(rel) => {
            let mut root = base.clone();
            root.set_query(None);
            root.set_fragment(None);
            root.set_path("");
            let root = root.as_str().trim_end_matches('/').to_string();
            format!("{root}{base_path}{rel}")
        }
        None => path.to_string(),
    };
    let url = Url::parse(&joined).map_err(|e| {
        OffTarget(format!(
            "the URL `{}` is not valid: {e}",
            shorten(&cairn_url::redact(&joined))
        ))
    })?;
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return Err(OffTarget(format!(
            "`{}` is not on the target `{}` (scheme, host and port must be the target's)",
            shorten(&cairn_url::redact(url.as_str())),
            cairn_url::redact(base.as_str())
        )));
    }
    let under = url.path() == base_path.trim_end_matches('/') || url.path().starts_with(&base_path);
    if !under {
        return Err(OffTarget(format!(
            "`{}` leaves the target's base path `{}`",
            shorten(&cairn_url::redact(url.as_str())),
            base.path()
        )));
    }
    Ok(url.to_string())
}

/// Whether `text` starts with `scheme://` (an absolute URL rather than a target-relative path).
pub fn has_scheme(text: &str) -> bool {
    let t = text.trim_start();
    t.find("://").is_some_and(|i| {
        i > 0
            && t[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// `.` and `..`, also percent-encoded (`%2e%2E`), which URL parsers resolve like the plain ones.
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let plain = lower.replace("%2e", ".");
    plain == "." || plain == ".."
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Turns a transport failure into the one line an operator reads; `url` is already redacted.
pub(crate) fn describe_error(
    err: &reqwest::Error,
    method: &str,
    url: &str,
    timeout: Option<Duration>,
) -> StepError {
    let method = method.to_ascii_uppercase();
    if err.is_timeout() {
        return match timeout {
            Some(after) => StepError::Timeout {
                after,
                result: Some(json!({"method": method, "url": url})),
            },
            None => StepError::failed(format!("timed out: {method} {url}"), None),
        };
    }
    if err.is_redirect() {
        return StepError::failed(
            format!("too many redirects (more than {MAX_REDIRECTS}): {method} {url}"),
            None,
        );
    }
    if err.is_builder() {
        return StepError::setup(format!(
            "invalid request {method} {url}: {}",
            root_cause(err)
        ));
    }
    if let Some(tls) = find_tls_error(err) {
        return match tls {
            rustls::Error::InvalidCertificate(reason) => StepError::setup(format!(
                "TLS certificate problem ({reason:?}) at {url}; set `insecure: true` for a self-signed certificate"
            )),
            other => StepError::setup(format!("TLS handshake failed at {url}: {other}")),
        };
    }
    if err.is_connect() {
        if has_io_kind(err, std::io::ErrorKind::ConnectionRefused) {
            return StepError::setup(format!("connection refused: {method} {url}"));
        }
        if err.is_dns() || chain_mentions(err, "dns error") {
            let host = Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            return StepError::setup(format!("DNS lookup failed for `{host}`: {method} {url}"));
        }
        return StepError::setup(format!(
            "cannot connect: {method} {url}: {}",
            root_cause(err)
        ));
    }
    StepError::failed(format!("{method} {url} failed: {}", root_cause(err)), None)
}

/// Walks the source chain, looking inside `io::Error`s too: their `source()` skips the error they wrap.
fn walk<'a>(
    err: &'a (dyn std::error::Error + 'static),
    visit: &mut dyn FnMut(&'a (dyn std::error::Error + 'static)),
) {
    let mut current = Some(err);
    while let Some(e) = current {
        visit(e);
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            walk(inner, visit);
        }
        current = e.source();
    }
}

fn find_tls_error(err: &reqwest::Error) -> Option<&rustls::Error> {
    let mut found = None;
    walk(err, &mut |e| {
        if found.is_none() {
            found = e.downcast_ref::<rustls::Error>();
        }
    });
    found
}

fn has_io_kind(err: &reqwest::Error, kind: std::io::ErrorKind) -> bool {
    let mut found = false;
    walk(err, &mut |e| {
        found |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
    });
    found
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    walk(err, &mut |e| last = e.to_string());
    last
}

fn chain_mentions(err: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut found = false;
    walk(err, &mut |e| found |= e.to_string().contains(needle));
    found
}
