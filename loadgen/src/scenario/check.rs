//! Whether an answer counts as a success: its status among those expected, and, when the
//! request has one, a check on its body (a JSON pointer equal to a value, or a substring),
//! as Locust's `catch_response` and k6's `check` do.

/// The statuses that count as success: listed codes and whole classes (`2xx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub codes: Vec<u16>,
    /// Classes by their first digit: 2 for `2xx`.
    pub classes: Vec<u16>,
}

impl Default for Expected {
    /// Any 2xx, as Goose and Locust count success.
    fn default() -> Expected {
        Expected {
            codes: Vec::new(),
            classes: vec![2],
        }
    }
}

impl Expected {
    pub fn accepts(&self, status: u16) -> bool {
        self.codes.contains(&status) || self.classes.contains(&(status / 100))
    }

    /// As the failure's cause says it: `201 or 2xx`.
    pub fn text(&self) -> String {
        let codes = self.codes.iter().map(u16::to_string);
        let classes = self.classes.iter().map(|c| format!("{c}xx"));
        codes.chain(classes).collect::<Vec<_>>().join(" or ")
    }
}

/// A check on an answer's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The value at an RFC 6901 pointer equals this one.
    Pointer {
        pointer: String,
        equals: serde_json::Value,
    },
    /// The body holds this text.
    Contains(String),
}

/// Longest piece of an answer a cause quotes: causes are counted by their text, so they
/// stay short and few.
const QUOTED: usize = 40;

impl Check {
    /// `None` when the body passes; otherwise why not, starting with `check:`.
    pub fn judge(&self, body: &[u8]) -> Option<String> {
        match self {
            Check::Contains(text) => {
                let found = body
                    .windows(text.len().max(1))
                    .any(|w| w == text.as_bytes());
                (!found).then(|| format!("check: the body does not contain {text:?}"))
            }
            Check::Pointer { pointer, equals } => {
                let Ok(document) = serde_json::from_slice::<serde_json::Value>(body) else {
                    return Some(format!(
                        "check: {pointer}: the body is not JSON, expected {equals}"
                    ));
                };
                match document.pointer(pointer) {
                    Some(found) if found == equals => None,
                    Some(found) => Some(format!(
                        "check: {pointer} is {}, expected {equals}",
                        quoted(&found.to_string())
                    )),
                    None => Some(format!("check: {pointer} is missing, expected {equals}")),
                }
            }
        }
    }
}

fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Why `pointer` is not an RFC 6901 JSON pointer, if it is not: empty (the whole
/// document) or `/`-separated tokens, `~` only as `~0` or `~1`.
pub(super) fn pointer_problem(pointer: &str) -> Option<String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Some(format!(
            "{pointer:?} does not start with '/'; write a JSON pointer such as \"/data/0/id\""
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Some(format!(
                "{pointer:?}: '~' must be '~0' (for ~) or '~1' (for /)"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_count_by_code_and_class() {
        let expected = Expected {
            codes: vec![404],
            classes: vec![2],
        };
        assert!(expected.accepts(200) && expected.accepts(299) && expected.accepts(404));
        assert!(!expected.accepts(302) && !expected.accepts(500) && !expected.accepts(0));
        assert_eq!(expected.text(), "404 or 2xx");
        assert!(!Expected::default().accepts(302));
    }

    #[test]
    fn a_pointer_check_names_what_it_found() {
        let check = Check::Pointer {
            pointer: "/route".into(),
            equals: json!("grpc"),
        };
        assert_eq!(check.judge(br#"{"route":"grpc"}"#), None);
        assert_eq!(
            check.judge(br#"{"route":"nats"}"#).unwrap(),
            r#"check: /route is "nats", expected "grpc""#
        );
        assert_eq!(
            check.judge(br#"{"id":1}"#).unwrap(),
            r#"check: /route is missing, expected "grpc""#
        );
        assert!(check.judge(b"<html>").unwrap().contains("not JSON"));
        let long = format!(r#"{{"route":"{}"}}"#, "x".repeat(500));
        assert!(check.judge(long.as_bytes()).unwrap().len() < 120);
    }

    #[test]
    fn a_substring_check() {
        let check = Check::Contains("ok".into());
        assert_eq!(check.judge(b"all ok"), None);
        assert!(check.judge(b"error").unwrap().contains(r#""ok""#));
    }

    #[test]
    fn pointers_are_checked_as_rfc_6901_says() {
        for good in ["", "/", "/a/0", "/a~1b", "/m~0n"] {
            assert_eq!(pointer_problem(good), None, "{good}");
        }
        for bad in ["route", "/a~2", "/a~"] {
            assert!(pointer_problem(bad).is_some(), "{bad}");
        }
    }
}
