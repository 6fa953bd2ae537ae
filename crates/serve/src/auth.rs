//! Who is asking: the identity of a request and its roles, by the console's `--auth` mode.
//!
//! - `none`: nobody is identified; the console only reads (and listens on loopback only).
//! - `proxy`: a reverse proxy that authenticated the user says who it is in `X-Forwarded-User`
//!   (and `X-Forwarded-Groups`); the headers are believed only from a `--trusted-proxy`
//!   address and ignored from anyone else.
//! - `token`: per-user tokens, kept in a file as SHA-256 hashes; sent as
//!   `Authorization: Bearer TOKEN` or, from a browser, in the cookie the login form sets.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use axum::http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

/// What a user may do. Each role includes `viewer`; `admin` includes every role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads runs, steps, logs, approvals.
    Viewer,
    /// Resumes runs.
    Operator,
    /// Answers approval gates (within each gate's own rules).
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// A role as a user holds it: over every run, or only over the runs whose labels include
/// every label of its scope (`approver[team=memory]`). Written and shown as in the token file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub role: Role,
    /// The labels a run must carry for the role to count in it; empty: every run.
    pub scope: Vec<(String, String)>,
}

impl Grant {
    /// The role over every run.
    pub fn everywhere(role: Role) -> Grant {
        Grant {
            role,
            scope: Vec::new(),
        }
    }

    /// `ROLE` or `ROLE[KEY=VALUE,...]`. Anything else is refused with the reason: a scope
    /// that cannot be read never becomes a role over every run.
    pub fn parse(s: &str) -> Result<Grant, String> {
        let s = s.trim();
        let (name, scope) = match s.split_once('[') {
            None => (s, None),
            Some((name, rest)) => {
                let Some(inner) = rest.strip_suffix(']') else {
                    return Err(format!("`{s}`: a scope ends with `]`"));
                };
                (name, Some(inner))
            }
        };
        let role = Role::parse(name)
            .ok_or_else(|| format!("unknown role `{name}` (viewer, operator, approver, admin)"))?;
        let Some(inner) = scope else {
            return Ok(Grant::everywhere(role));
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in inner.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(format!(
                    "`{s}`: a scope is `{name}[KEY=VALUE,...]`, not `{pair}`"
                ));
            };
            for part in [k, v] {
                if !valid_label(part) {
                    return Err(format!(
                        "`{s}`: `{part}` is not a label key or value (letters, digits, `-`, \
                         `_`, `.`, `/`, `:`, `@`, `+`)"
                    ));
                }
            }
            if pairs.iter().any(|(have, _)| have == k) {
                return Err(format!("`{s}`: label `{k}` is given twice"));
            }
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs.sort();
        Ok(Grant { role, scope: pairs })
    }

    /// Whether this grant gives `role` in a run with these labels.
    pub fn gives(&self, role: Role, labels: &BTreeMap<String, String>) -> bool {
        (self.role == role || self.role == Role::Admin || role == Role::Viewer)
            && self
                .scope
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.role.as_str())?;
        if !self.scope.is_empty() {
            let pairs: Vec<String> = self.scope.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "[{}]", pairs.join(","))?;
        }
        Ok(())
    }
}

impl serde::Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A label key or value as a scope may name it: printable, no spaces or separators of the
/// token file's syntax, at most 128 bytes.
fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+'))
}

/// Splits at the commas outside brackets: `approver[team=a,kind=b],viewer` is two roles.
fn split_roles(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// How the identity was learnt: whether the browser sends it by itself (a cookie, or a proxy's
/// session), which is what cross-site request forgery abuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `X-Forwarded-User` from a trusted proxy.
    Proxy,
    /// The login cookie.
    Cookie,
    /// `Authorization: Bearer`.
    Bearer,
}

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<Grant>,
    /// Groups, for gates whose approvers name `group:NAME`.
    pub groups: Vec<String>,
    pub via: Via,
}

impl Identity {
    /// Whether the user holds the role over some runs at least (any scope).
    pub fn has(&self, role: Role) -> bool {
        role == Role::Viewer
            || self
                .roles
                .iter()
                .any(|g| g.role == role || g.role == Role::Admin)
    }

    /// Whether the user holds the role in a run with these labels: an unscoped grant of it, or
    /// one whose scope the labels match.
    pub fn may(&self, role: Role, labels: &BTreeMap<String, String>) -> bool {
        role == Role::Viewer || self.roles.iter().any(|g| g.gives(role, labels))
    }

    /// Sent by the browser on its own: a forged cross-site request would carry it.
    pub fn ambient(&self) -> bool {
        self.via != Via::Bearer
    }
}

/// One line of the token file.
#[derive(Clone, Debug)]
pub struct TokenEntry {
    pub user: String,
    pub roles: Vec<Grant>,
    pub groups: Vec<String>,
    hash: [u8; 32],
}

/// The `--auth` mode with what it needs.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Proxy { trusted: Vec<IpNet> },
    Token { tokens: Vec<TokenEntry> },
}

/// The name of the login cookie of `--auth token`.
pub const TOKEN_COOKIE: &str = "cairn_token";

/// A mistake in the token file, with its line.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct TokenFileError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

/// Reads a token file: one user per line, `USER ROLES sha256:HEX [GROUPS]`, where ROLES and
/// GROUPS are comma-separated; `#` starts a comment. The hash is of the token's bytes
/// (`printf %s "$TOKEN" | sha256sum`).
pub fn read_tokens(path: &Path) -> Result<Vec<TokenEntry>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenFileError {
        path: path.display().to_string(),
        line: 0,
        reason: e.to_string(),
    })?;
    parse_tokens(&path.display().to_string(), &text)
}

pub fn parse_tokens(path: &str, text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    let mut out: Vec<TokenEntry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |reason: String| TokenFileError {
            path: path.to_string(),
            line: n + 1,
            reason,
        };
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [user, roles, hash, rest @ ..] = fields.as_slice() else {
            return Err(err(
                "expected `USER ROLES sha256:HEX [GROUPS]` (ROLES: viewer, operator, approver, admin)"
                    .into(),
            ));
        };
        if rest.len() > 1 {
            return Err(err("too many fields".into()));
        }
        if !valid_name(user) {
            return Err(err(format!("`{user}` is not a user name")));
        }
        let roles = split_roles(roles)
            .into_iter()
            .map(|r| Grant::parse(r).map_err(&err))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(hex) = hash.strip_prefix("sha256:") else {
            return Err(err(
                "the hash must be `sha256:` and 64 hex digits (printf %s \"$TOKEN\" | sha256sum)"
                    .into(),
            ));
        };
        let hash = decode_hex(hex)
            .ok_or_else(|| err("`sha256:` must be followed by 64 hex digits".into()))?;
        if out.iter().any(|e| e.hash == hash) {
            return Err(err("this token hash is given twice".into()));
        }
        let groups = rest
            .first()
            .map(|g| {
                g.split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.push(TokenEntry {
            user: user.to_string(),
            roles,
            groups,
            hash,
        });
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A user or group name as a header or the token file may give it: printable, no spaces or
/// separators, at most 128 bytes.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@' | '+'))
}

/// Compares every byte whatever the first difference: the time taken says nothing of a hash.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of one cookie in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who made the request, and from where.
#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Option<Identity>,
    /// The client's address: the socket's peer, or what a trusted proxy says it forwarded.
    pub source: String,
}

impl Auth {
    /// The caller of a request from `peer` with `headers`.
    pub fn caller(&self, peer: SocketAddr, headers: &HeaderMap) -> Caller {
        let peer_ip = peer.ip();
        match self {
            Auth::None => Caller {
                identity: None,
                source: peer_ip.to_string(),
            },
            Auth::Proxy { trusted } => {
                if !is_trusted(trusted, peer_ip) {
                    // Anyone may send these headers: only a trusted proxy is believed.
                    return Caller {
                        identity: None,
                        source: peer_ip.to_string(),
                    };
                }
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                };
                // The proxy appends the address it received the request from.
                let source = header("x-forwarded-for")
                    .and_then(|f| f.rsplit(',').next())
                    .map(str::trim)
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map_or_else(
                        || peer_ip.to_string(),
                        |client| format!("{client} via {peer_ip}"),
                    );
                let identity =
                    header("x-forwarded-user")
                        .filter(|u| valid_name(u))
                        .map(|user| {
                            let given: Vec<&str> = split_roles(header("x-forwarded-groups").unwrap_or(""))
                                .into_iter()
                                .map(str::trim)
                                .collect();
                            let groups: Vec<String> = given
                                .iter()
                                .filter(|g| valid_name(g))
                                .map(|g| g.to_string())
                                .collect();
                            // A group named after a role (or `cairn-ROLE`) gives it, scoped as
                            // the token file writes it (`cairn-approver[team=memory]`); whoever
                            // the proxy lets through may read. A scope that cannot be read
                            // gives nothing.
                            let mut roles = vec![Grant::everywhere(Role::Viewer)];
                            roles.extend(given.iter().filter_map(|g| {
                                let g = g.strip_prefix("cairn-").unwrap_or(g);
                                match Grant::parse(g) {
                                    Ok(grant) => Some(grant),
                                    Err(reason) if g.contains('[') => {
                                        tracing::warn!(user, group = g, %reason, "proxy group ignored: its scope cannot be read");
                                        None
                                    }
                                    Err(_) => None,
                                }
                            }));
                            roles.sort();
                            roles.dedup();
                            Identity {
                                user: user.to_string(),
                                roles,
                                groups,
                                via: Via::Proxy,
                            }
                        });
                Caller { identity, source }
            }
            Auth::Token { tokens } => {
                let bearer = headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|t| (t.trim().to_string(), Via::Bearer));
                let given = bearer.or_else(|| {
                    cookie(headers, TOKEN_COOKIE)
                        .and_then(|v| urlencoding::decode(v).ok())
                        .map(|t| (t.trim().to_string(), Via::Cookie))
                });
                let identity = given.and_then(|(token, via)| {
                    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                    // Every entry is compared, so the time says nothing of which one matched.
                    let mut found = None;
                    for e in tokens {
                        if same(&e.hash, &hash) {
                            found = Some(e);
                        }
                    }
                    found.map(|e| Identity {
                        user: e.user.clone(),
                        roles: e.roles.clone(),
                        groups: e.groups.clone(),
                        via,
                    })
                });
                Caller {
                    identity,
                    source: peer_ip.to_string(),
                }
            }
        }
    }

    /// The token of the login form, if it is one of the file's: the identity it stands for.
    pub fn login(&self, token: &str) -> Option<Identity> {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {}", token.trim());
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().ok()?);
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        self.caller(peer, &headers).identity
    }

    pub fn name(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Proxy { .. } => "proxy",
            Auth::Token { .. } => "token",
        }
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    // An IPv4 client over an IPv6 socket appears as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(t: &str) -> String {
        let h = Sha256::digest(t.as_bytes());
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn token_file_lines_and_mistakes() {
        let text = format!(
            "# who roles hash groups\nalice approver,viewer sha256:{}\nbob admin sha256:{} dba,ops\n",
            hash("a-token"),
            hash("b-token")
        );
        let t = parse_tokens("t", &text).expect("parses");
        assert_eq!(t[0].user, "alice");
        assert_eq!(t[1].groups, ["dba", "ops"]);
        let bad = parse_tokens("t", "carol wizard sha256:00").expect_err("role");
        assert_eq!((bad.line, bad.reason.contains("unknown role")), (1, true));
        let bad = parse_tokens("t", "\ncarol viewer plain").expect_err("hash");
        assert_eq!(bad.line, 2);
        let auth = Auth::Token { tokens: t };
        assert_eq!(auth.login("a-token").map(|i| i.user), Some("alice".into()));
        assert_eq!(auth.login("b-token ").map(|i| i.user), Some("bob".into()));
        assert!(auth.login("nope").is_none());
    }

    #[test]
    fn scoped_roles_in_the_token_file_and_from_a_proxy() {
        let text = format!(
            "alice approver[team=memory,kind=backup],operator[team=storage] sha256:{}\n\
             bob viewer,approver sha256:{}\n",
            hash("a"),
            hash("b")
        );
        let t = parse_tokens("t", &text).expect("parses");
        let shown: Vec<String> = t[0].roles.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "approver[kind=backup,team=memory]",
                "operator[team=storage]"
            ]
        );
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let auth = Auth::Token { tokens: t };
        let alice = auth.login("a").expect("alice");
        let both = labels(&[("team", "memory"), ("kind", "backup"), ("x", "y")]);
        assert!(alice.may(Role::Approver, &both));
        assert!(!alice.may(Role::Approver, &labels(&[("team", "memory")])));
        assert!(!alice.may(Role::Operator, &both));
        assert!(alice.may(Role::Operator, &labels(&[("team", "storage")])));
        assert!(alice.may(Role::Viewer, &BTreeMap::new()));
        assert!(alice.has(Role::Approver) && !alice.has(Role::Admin));
        let bob = auth.login("b").expect("bob");
        assert!(
            bob.may(Role::Approver, &BTreeMap::new()),
            "unscoped: every run"
        );

        for (roles, reason) in [
            ("approver[team]", "KEY=VALUE"),
            ("approver[team=memory", "ends with `]`"),
            ("approver[]", "KEY=VALUE"),
            ("approver[team=]", "not a label key or value"),
            ("approver[team=a,team=b]", "given twice"),
            ("approver[te\"am=a]", "not a label key or value"),
            ("wizard[team=a]", "unknown role"),
        ] {
            let text = format!("# c\nzed {roles} sha256:{}\n", hash("z"));
            let bad = parse_tokens("t", &text).expect_err(roles);
            assert_eq!(bad.line, 2, "{roles}");
            assert!(bad.reason.contains(reason), "{roles}: {}", bad.reason);
        }

        let proxy = Auth::Proxy {
            trusted: vec!["127.0.0.1/32".parse().expect("net")],
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "carol".parse().expect("v"));
        h.insert(
            "x-forwarded-groups",
            "ops, cairn-approver[team=memory,kind=backup], cairn-operator[team=], admin[x"
                .parse()
                .expect("v"),
        );
        let carol = proxy
            .caller(SocketAddr::from(([127, 0, 0, 1], 1)), &h)
            .identity
            .expect("identity");
        let shown: Vec<String> = carol.roles.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["viewer", "approver[kind=backup,team=memory]"],
            "a scope that cannot be read gives nothing"
        );
        assert_eq!(carol.groups, ["ops"]);
        assert!(carol.may(Role::Approver, &both));
        assert!(!carol.may(Role::Approver, &BTreeMap::new()));
    }

    #[test]
    fn proxy_headers_only_from_trusted_addresses() {
        let auth = Auth::Proxy {
            trusted: vec!["127.0.0.1/32".parse().expect("net")],
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "alice".parse().expect("v"));
        h.insert(
            "x-forwarded-groups",
            "cairn-approver, ops".parse().expect("v"),
        );
        h.insert("x-forwarded-for", "198.51.100.4".parse().expect("v"));
        let from = |ip: [u8; 4], h: &HeaderMap| auth.caller(SocketAddr::from((ip, 1)), h);
        let trusted = from([127, 0, 0, 1], &h);
        let who = trusted.identity.expect("identity");
        assert_eq!(who.user, "alice");
        assert!(who.has(Role::Approver) && !who.has(Role::Operator));
        assert_eq!(trusted.source, "198.51.100.4 via 127.0.0.1");
        let other = from([10, 0, 0, 9], &h);
        assert!(other.identity.is_none());
        assert_eq!(other.source, "10.0.0.9");
        h.insert("x-forwarded-user", "<script>".parse().expect("v"));
        assert!(from([127, 0, 0, 1], &h).identity.is_none());
    }
}
