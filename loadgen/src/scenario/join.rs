//! A request's path joined under `--host`: the host is a base, its path kept, so a
//! service behind `http://h/api/` is tested at `http://h/api/records`.

/// `path` under `host`'s path. Leading slashes of `path` are dropped, so `/records` and
/// `records` both go to `http://h/api/records`, and `/` goes to the host's own path; a host
/// without a trailing slash gets one (`http://h/api` is `http://h/api/`). A query in `path`
/// is kept; the host's own query is not. `..` segments may climb out of the host's path.
pub fn join_under(host: &url::Url, path: &str) -> Result<url::Url, url::ParseError> {
    let mut base = host.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.set_query(None);
    base.set_fragment(None);
    // "./" keeps a path such as `a:b` relative instead of a URL with scheme `a`.
    base.join(&format!("./{}", path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(host: &str, path: &str) -> String {
        join_under(&url::Url::parse(host).unwrap(), path)
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_path_goes_under_the_hosts_path_with_or_without_a_leading_slash() {
        assert_eq!(joined("http://h/api/", "records"), "http://h/api/records");
        assert_eq!(joined("http://h/api/", "/records"), "http://h/api/records");
        assert_eq!(joined("http://h/api", "records"), "http://h/api/records");
        assert_eq!(joined("http://h/api/", "/"), "http://h/api/");
        assert_eq!(joined("http://h:8080", "/"), "http://h:8080/");
        assert_eq!(joined("http://h", "a/b?x=1&y=2"), "http://h/a/b?x=1&y=2");
        assert_eq!(
            joined("http://h/api/?k=v", "?limit=5"),
            "http://h/api/?limit=5"
        );
    }

    #[test]
    fn a_path_never_leaves_the_host() {
        assert_eq!(joined("http://h/api/", "//evil/x"), "http://h/api/evil/x");
        assert_eq!(joined("http://h/api/", "mailto:x"), "http://h/api/mailto:x");
        assert_eq!(
            joined("http://h/api/", "http://other/"),
            "http://h/api/http://other/"
        );
    }
}
