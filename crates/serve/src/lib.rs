//! `cairn serve`: the web console and its JSON API over the same state store as the CLI.
//!
//! Every page is one client of the API: the handler reads one JSON value ([`view`]) and either
//! returns it (`/api/...`) or renders it through a template embedded in the binary. Pages are
//! plain HTML and work without JavaScript; the only script (`/assets/app.js`, no inline
//! script: the Content-Security-Policy is `default-src 'self'`) follows a running step's log.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_serve::{App, Config, auth::Auth};
//! let store = cairn_state::open_existing("sqlite://.cairn/state.db").await?;
//! let config = Config {
//!     auth: Auth::None,
//!     resumer: cairn_serve::actions::Resumer {
//!         exe: std::env::current_exe()?,
//!         state_url: "sqlite://.cairn/state.db".into(),
//!         logs_dir: ".cairn/logs".into(),
//!         queue: None,
//!     },
//!     logs_dir: ".cairn/logs".into(),
//!     runbooks: Some("runbooks".into()),
//!     // The `cairn` binary gives its own report renderers here.
//!     reports: None,
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! cairn_serve::serve(listener, App::new(store, config)).await?;
//! # Ok(()) }
//! ```

pub mod actions;
mod app;
pub mod auth;
mod csrf;
mod dag;
mod handlers;
mod logs;
mod openapi;
mod pages;
pub mod reports;
mod runbooks;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub use app::{App, Config};

/// Every route of the console and its API.
pub fn router(app: Arc<App>) -> Router {
    handlers::routes()
        .layer(axum::middleware::from_fn_with_state(app.clone(), identify))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

/// Serves until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Reads who is asking (once, for every route) into the request's extensions.
async fn identify(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = app.config.auth.caller(peer, req.headers());
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The headers every response carries: no script but the server's own files, no framing, no
/// type sniffing, no referrer to other sites, no caching of pages that show runs.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // `same-origin`, not `no-referrer`: with no referrer a browser sends `Origin: null` on
    // its own forms, and the login form checks that its post comes from this origin.
    set(h, header::REFERRER_POLICY, "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}
