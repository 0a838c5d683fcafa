//! Secrets stay in the process: every broker or database URL, and every library error that
//! may quote one, passes through here before it reaches a log line. (Client answers carry
//! no URL at all; see `error.rs`.)

/// `text` with the user information of every URL in it (`scheme://user:password@`)
/// replaced by `***@`. Works on free text, because library errors quote URLs inside
/// sentences.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#' or blank; user info ends at its last '@'.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(user_end) => {
                out.push_str("***@");
                out.push_str(&authority[user_end + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_replaced_wherever_a_url_stands() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(
            redact("no connection to nats://app:s3cret@127.0.0.1:4999 (refused); nats://h:1"),
            "no connection to nats://***@127.0.0.1:4999 (refused); nats://h:1"
        );
        assert_eq!(
            redact("postgres://u:p@w@db:5432/x?sslmode=disable"),
            "postgres://***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact("a plain sentence"), "a plain sentence");
        assert_eq!(redact("tail ://"), "tail ://");
    }
}
