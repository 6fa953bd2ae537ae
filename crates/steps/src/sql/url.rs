//! Masking database URLs for every message an operator or a log will see.

/// The URL with its password removed (`postgres://user:pw@h/db` -> `postgres://user@h/db`) and
/// any `password=`-like query parameter replaced by `***`.
pub fn masked_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            // The last '@' ends the user info: an unencoded password may hold '@' or '/'.
            // (A path with '@' in it may then display oddly, but nothing leaks.)
            match rest.rsplit_once('@') {
                Some((userinfo, host_and_path)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    format!("{scheme}://{user}@{host_and_path}")
                }
                None => format!("{scheme}://{rest}"),
            }
        }
        None => head.to_string(),
    };
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                    format!("{key}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::masked_url;

    #[test]
    fn masks() {
        let cases = [
            (
                "postgres://memory:s3cr@t@10.0.0.5:5432/memory",
                "postgres://memory@10.0.0.5:5432/memory",
            ),
            (
                "postgres://memory@10.0.0.5/memory",
                "postgres://memory@10.0.0.5/memory",
            ),
            (
                "mysql://root:@127.0.0.1:3306/test",
                "mysql://root@127.0.0.1:3306/test",
            ),
            (
                "postgres://h/db?user=a&password=x&sslmode=require",
                "postgres://h/db?user=a&password=***&sslmode=require",
            ),
            ("sqlite:///var/lib/x.db", "sqlite:///var/lib/x.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgres://u:p@h", "postgres://u@h"),
            ("postgres://u:a/b@c@h:1/db", "postgres://u@h:1/db"),
        ];
        for (url, want) in cases {
            assert_eq!(masked_url(url), want, "{url}");
        }
    }
}
