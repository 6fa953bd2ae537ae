//! One delivery attempt to one notifier: an HTTP POST or an SMTP session. No retry and no
//! timeout here: the dispatcher wraps each attempt in both.

use crate::config::{Kind, NotifierConfig};
use crate::error::SendError;
use crate::notice::Notice;
use crate::payload;
use std::net::IpAddr;

/// Characters of a refusing server's body kept in the error.
const BODY_SHOWN: usize = 300;

/// The HTTP client shared by every notifier: no redirects (a signed body must not be replayed
/// to another address, and a POST redirected becomes a GET).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

pub(crate) async fn send(
    http: &reqwest::Client,
    cfg: &NotifierConfig,
    notice: &Notice,
) -> Result<(), SendError> {
    match &cfg.kind {
        Kind::Webhook {
            url,
            secret,
            headers,
        } => {
            let body = payload::webhook_body(notice);
            let mut req = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(secret) = secret {
                req = req.header(payload::SIGNATURE_HEADER, payload::signature(secret, &body));
            }
            for (k, v) in headers {
                req = req.header(k, v);
            }
            post(req.body(body)).await
        }
        Kind::Slack { url } => post(http.post(url).json(&payload::slack_body(notice))).await,
        Kind::PagerDuty { routing_key, url } => {
            let body = payload::pagerduty_body(notice, routing_key);
            post(http.post(url).json(&body)).await
        }
        Kind::Email { .. } => email(cfg, notice).await,
    }
}

async fn post(req: reqwest::RequestBuilder) -> Result<(), SendError> {
    // The URL is left out of the error (it is often the secret itself, as with Slack).
    let http = |e: reqwest::Error| SendError::Http(chain(&e.without_url()));
    // No timeout of its own: the dispatcher bounds the whole attempt.
    let resp = req.send().await.map_err(http)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(SendError::Status {
        status: status.as_u16(),
        body: body.chars().take(BODY_SHOWN).collect(),
    })
}

/// An error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// Where to deliver mail: host, port, TLS from the first byte.
struct Smtp {
    host: String,
    port: u16,
    wrapper: bool,
}

fn smtp_url(url: &str) -> Result<Smtp, SendError> {
    let bad = |why: &str| SendError::Settings(format!("`smtp` {why}"));
    let (wrapper, rest) = if let Some(r) = url.strip_prefix("smtps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("smtp://") {
        (false, r)
    } else {
        return Err(bad("must start with smtp:// or smtps://"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err(bad(
            "must not hold credentials: use `username` and `password`",
        ));
    }
    if rest.contains('/') || rest.contains('?') {
        return Err(bad("is a host and an optional port, nothing more"));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(r) => {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed `[`"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("has an invalid port"))?,
                ),
            };
            (h, port)
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad("has an invalid port"))?,
        None if wrapper => 465,
        None => 587,
    };
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    Ok(Smtp {
        host: host.to_string(),
        port,
        wrapper,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn email(cfg: &NotifierConfig, notice: &Notice) -> Result<(), SendError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let Kind::Email {
        smtp,
        starttls,
        from,
        to,
        username,
        password,
    } = &cfg.kind
    else {
        return Err(SendError::Settings("not an email notifier".into()));
    };
    let at = smtp_url(smtp)?;
    let encrypted = at.wrapper || *starttls;
    if username.is_some() && !encrypted && !is_loopback(&at.host) {
        return Err(SendError::Settings(
            "refusing to send SMTP credentials unencrypted: use `starttls: true` or smtps://"
                .into(),
        ));
    }
    let address = |a: &str, what: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| SendError::Settings(format!("invalid {what} address `{a}`: {e}")))
    };
    let mut msg = Message::builder()
        .from(address(from, "`from`")?)
        .subject(payload::email_subject(notice))
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        msg = msg.to(address(t, "`to`")?);
    }
    let msg = msg
        .body(notice.text())
        .map_err(|e| SendError::Settings(format!("cannot build the mail: {e}")))?;
    let tls_params = || TlsParameters::new(at.host.clone()).map_err(|e| SendError::Smtp(chain(&e)));
    let tls = if at.wrapper {
        Tls::Wrapper(tls_params()?)
    } else if *starttls {
        Tls::Required(tls_params()?)
    } else {
        Tls::None
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&at.host)
        .port(at.port)
        .tls(tls)
        .timeout(Some(cfg.timeout));
    if let Some(user) = username {
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.clone().unwrap_or_default(),
        ));
    }
    transport
        .build()
        .send(msg)
        .await
        .map(drop)
        .map_err(|e| SendError::Smtp(chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let ok = |u: &str| {
            let s = smtp_url(u).unwrap_or_else(|e| panic!("{u}: {e}"));
            (s.host, s.port, s.wrapper)
        };
        assert_eq!(
            ok("smtp://mail.example"),
            ("mail.example".into(), 587, false)
        );
        assert_eq!(
            ok("smtp://127.0.0.1:2525"),
            ("127.0.0.1".into(), 2525, false)
        );
        assert_eq!(
            ok("smtps://mail.example/"),
            ("mail.example".into(), 465, true)
        );
        assert_eq!(ok("smtp://[::1]:25"), ("::1".into(), 25, false));
        assert_eq!(ok("smtp://[::1]"), ("::1".into(), 587, false));
        for bad in [
            "mail.example",
            "smtp://u:p@mail.example",
            "smtp://mail.example:x",
            "smtp://",
            "smtp://h/path",
        ] {
            assert!(smtp_url(bad).is_err(), "{bad}");
        }
    }
}
