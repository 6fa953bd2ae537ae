//! The credentials in a URL, found by one rule wherever Cairn shows a URL or masks its secrets:
//! state URLs in errors, SQL and HTTP targets in plans, logs and step errors, Chroma URLs.
//!
//! The rule fails closed. A password written into a URL is often not percent-encoded, so it may
//! hold `/`, `?`, `#`, `:` or `@`, and no parser can tell where it ends; a URL parser that reads
//! `postgres://u:12/w@h/db` as host `u`, port 12 and path `/w@h/db` would print the password.
//! So the user information runs from `://` to the **last** `@` of the URL: a URL whose query
//! holds an `@` is shown with more hidden than needed, never with a password showing. Query
//! parameters whose name holds `password`, `passwd`, `pwd`, `secret` or `token` are hidden too.
//!
//! ```
//! assert_eq!(cairn_url::redact("postgres://app:s3/cr?t@db:5432/x"), "postgres://app:***@db:5432/x");
//! assert_eq!(cairn_url::redact("postgres://db/x?user=a&password=pw"), "postgres://db/x?user=a&password=***");
//! assert!(cairn_url::secrets("https://u:p%40ss@h/").contains(&"p@ss".to_string()));
//! ```

/// Query parameter names (lowercased) that hold a secret when they contain one of these.
const SECRET_PARAMS: &[&str] = &["password", "passwd", "pwd", "secret", "token"];

/// The byte range of the user information (`user:password`, without the `@`), if any.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let at = start + url[start..].rfind('@')?;
    Some((start, at))
}

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// The query of `url` after its user information: where parameters are looked for.
fn query_start(url: &str) -> Option<usize> {
    let from = userinfo(url).map_or(0, |(_, at)| at + 1);
    url[from..].find('?').map(|q| from + q + 1)
}

/// `url` as it may be shown: the password replaced by `***` (the user kept), and the values of
/// secret query parameters too. A URL without credentials comes back unchanged.
pub fn redact(url: &str) -> String {
    let mut out = match userinfo(url) {
        Some((start, at)) => match url[start..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    if let Some(q) = query_start(&out) {
        let end = out[q..].find('#').map_or(out.len(), |h| q + h);
        let query = out[q..end]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if secret_param(k) && !v.is_empty() => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.replace_range(q..end, &query);
    }
    out
}

/// Every text of `url` that may be a secret, for a masker: the password as written and
/// percent-decoded (by the rule above, and as a URL parser that stops at the first `@` or `/`
/// would read it, so both are masked), and the values of secret query parameters.
pub fn secrets(url: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |raw: &str| {
        for v in [raw.to_string(), decode(raw)] {
            if !v.is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
    };
    if let Some((start, at)) = userinfo(url) {
        let info = &url[start..at];
        if let Some((_, pw)) = info.split_once(':') {
            add(pw);
            // As a parser that ends the user information at the first `@` or `/` reads it.
            if let Some(short) = pw.split(['@', '/']).next() {
                add(short);
            }
        }
    }
    if let Some(q) = query_start(url) {
        let end = url[q..].find('#').map_or(url.len(), |h| q + h);
        for pair in url[q..end].split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && secret_param(k)
            {
                add(v);
            }
        }
    }
    out
}

fn decode(s: &str) -> String {
    urlencoding::decode(s).map_or_else(|_| s.to_string(), |d| d.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_hidden_whatever_it_holds() {
        let cases = [
            (
                "postgres://cairn:s3cr@t@db:5432/x",
                "postgres://cairn:***@db:5432/x",
            ),
            ("foo://u:se/cretpw@h/db", "foo://u:***@h/db"),
            ("postgres://u:12/w@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p?w@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p#w@h/db", "postgres://u:***@h/db"),
            (
                "mysql://root:@127.0.0.1:3306/test",
                "mysql://root:***@127.0.0.1:3306/test",
            ),
            (
                "https://u:p@example.com/x?y=1",
                "https://u:***@example.com/x?y=1",
            ),
            // An `@` in the query hides more than needed, never less.
            ("postgres://u:p/w@db/x?a=b@c", "postgres://u:***@c"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "postgres://cairn@db/x",
            "postgres://db/x",
            "sqlite:///var/lib/x.db",
            "sqlite::memory:",
            "http://example.com/",
            "postgres://db/x?sslmode=require&application_name=cairn",
            "not a url",
            "",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn secret_query_parameters_are_hidden() {
        assert_eq!(
            redact("postgres://h/db?user=a&password=x&sslmode=require"),
            "postgres://h/db?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact("https://h/x?access_token=abc&q=1#frag"),
            "https://h/x?access_token=***&q=1#frag"
        );
        assert_eq!(
            secrets("postgres://h/db?sslpassword=k%26y"),
            ["k%26y", "k&y"]
        );
    }

    #[test]
    fn every_reading_of_the_password_is_a_secret() {
        let s = secrets("postgres://u:ab%2Fc@12/w@h/db");
        for want in ["ab%2Fc@12/w", "ab/c@12/w", "ab%2Fc", "ab/c"] {
            assert!(s.contains(&want.to_string()), "{want} in {s:?}");
        }
        assert!(secrets("postgres://u@h/db").is_empty());
        assert!(secrets("postgres://u:@h/db").is_empty());
    }
}
