//! A small real HTTP/1.1 server on 127.0.0.1:0, plain or TLS with a fresh self-signed certificate.
//!
//! Routes:
//! - `/echo` and `/echo/*`: 200, JSON `{"method","path","query","headers":{..},"body"}` of the request
//! - `/status/N`: status N
//! - `/redirect/N`: 302 to `/redirect/N-1`, and `/redirect/0` to `/echo`; `/loop`: 302 to itself
//! - `/goto?URL`: 302 to URL (the whole query)
//! - `/slow/MS`: answers after MS milliseconds
//! - `/big/N`: N bytes of `x`
//! - `/headers`: `x-custom: yes` and two `set-cookie` headers
//! - `/api/v1/heartbeat`, `/api/v1/version`: an old Chroma that knows no v2 (everything else: 404)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

pub struct TestServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// HTTPS with a self-signed certificate for `localhost` and 127.0.0.1.
    pub async fn start_tls() -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        // An explicit provider: the process-wide default is ambiguous when several are built in.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        Self::serve(Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(handle);
                    // Errors here are the client hanging up (timeouts, refused certificates): expected.
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        TestServer { addr, scheme, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
    response
        .headers_mut()
        .insert("content-type", content_type.parse().expect("content type"));
    response
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut response = respond(302, "text/plain", "moved");
    response
        .headers_mut()
        .insert("location", to.parse().expect("location"));
    response
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        headers.insert(
            name.to_string(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into()),
        );
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let number = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    // `/echo/...` too: a Chroma target with a path prefix lands there.
    let response = if path == "/echo" || path.starts_with("/echo/") {
        let echo = json!({
            "method": method, "path": path, "query": query, "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        respond(200, "application/json", echo.to_string())
    } else if let Some(code) = number("/status/").and_then(|n| u16::try_from(n).ok()) {
        respond(code, "text/plain", format!("status {code}"))
    } else if let Some(n) = number("/redirect/") {
        redirect(&if n == 0 {
            "/echo".to_owned()
        } else {
            format!("/redirect/{}", n - 1)
        })
    } else if path == "/goto" {
        redirect(&query)
    } else if path == "/loop" {
        redirect("/loop")
    } else if let Some(ms) = number("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        respond(200, "text/plain", "slow")
    } else if let Some(n) = number("/big/") {
        respond(
            200,
            "text/plain",
            vec![b'x'; usize::try_from(n).expect("size")],
        )
    } else if path == "/headers" {
        let mut response = respond(200, "text/plain", "");
        let h = response.headers_mut();
        h.insert("x-custom", "yes".parse().expect("value"));
        h.append("set-cookie", "a=1".parse().expect("value"));
        h.append("set-cookie", "b=2".parse().expect("value"));
        response
    } else if path == "/api/v1/heartbeat" {
        respond(200, "application/json", r#"{"nanosecond heartbeat": 42}"#)
    } else if path == "/api/v1/version" {
        respond(200, "application/json", r#""0.4.24""#)
    } else {
        respond(
            404,
            "application/json",
            r#"{"error":"NotFound","message":"no such route"}"#,
        )
    };
    Ok(response)
}
