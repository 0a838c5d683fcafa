//! The traffic file: a JSON array of objects, loaded and checked once before any user
//! starts, kept as the exact bytes of each element so every send is byte-for-byte the file's.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::value::RawValue;
use thiserror::Error;

/// The records to replay, shared read-only by every user.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Where the records came from, for the report.
    pub path: PathBuf,
    /// Each element's text as it stands in the file: a cheap-to-clone request body.
    pub records: Vec<Bytes>,
}

/// Why a traffic file can't be replayed. Each message names the file and says what to fix.
#[derive(Debug, Error)]
pub enum TrafficError {
    #[error(
        "traffic file {path}: cannot read it ({source}); check the path or pass --traffic FILE"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "traffic file {path}: not valid JSON at line {line}, column {column}: {message}; fix the file and run again"
    )]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "traffic file {path}: the top level is {found}, but it must be an array of JSON objects, like [{{\"name\":\"Graeme\",\"msg\":\"protocol\"}}]"
    )]
    NotArray { path: PathBuf, found: &'static str },
    #[error("traffic file {path}: the array is empty; add at least one JSON object to replay")]
    Empty { path: PathBuf },
    #[error(
        "traffic file {path}: element {index} (counting from 0) is {found}, but every element must be a JSON object"
    )]
    NotObject {
        path: PathBuf,
        index: usize,
        found: &'static str,
    },
}

impl Traffic {
    /// Reads and checks `path`. Nothing is sent before this succeeds.
    pub fn load(path: &Path) -> Result<Traffic, TrafficError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrafficError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks `text` as the contents of `path` (kept apart from I/O for unit tests).
    pub fn parse(path: &Path, text: &str) -> Result<Traffic, TrafficError> {
        let syntax = |error: serde_json::Error| TrafficError::Syntax {
            path: path.to_path_buf(),
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        };
        let whole: &RawValue = serde_json::from_str(text).map_err(syntax)?;
        let found = kind_of(whole.get());
        if found != "an array" {
            return Err(TrafficError::NotArray {
                path: path.to_path_buf(),
                found,
            });
        }
        let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(syntax)?;
        if elements.is_empty() {
            return Err(TrafficError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut records = Vec::with_capacity(elements.len());
        for (index, element) in elements.into_iter().enumerate() {
            let found = kind_of(element.get());
            if found != "an object" {
                return Err(TrafficError::NotObject {
                    path: path.to_path_buf(),
                    index,
                    found,
                });
            }
            records.push(Bytes::copy_from_slice(element.get().as_bytes()));
        }
        Ok(Traffic {
            path: path.to_path_buf(),
            records,
        })
    }
}

/// The JSON kind of a value already known to be valid, from its first character.
fn kind_of(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Traffic, TrafficError> {
        Traffic::parse(Path::new("t.json"), text)
    }

    #[test]
    fn keeps_each_element_byte_for_byte() {
        let traffic = parse("[ {\"b\": 1, \"a\": \"ü\"} ,{\"n\":{\"x\":[1,2]}}]").unwrap();
        assert_eq!(traffic.records.len(), 2);
        assert_eq!(
            &traffic.records[0][..],
            "{\"b\": 1, \"a\": \"ü\"}".as_bytes()
        );
        assert_eq!(&traffic.records[1][..], b"{\"n\":{\"x\":[1,2]}}");
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        let error = parse("[\n {\"a\": 1},\n {\"b\" 2}\n]").unwrap_err();
        match error {
            TrafficError::Syntax { line, column, .. } => {
                assert_eq!((line, column), (3, 7));
            }
            other => panic!("expected a syntax error, got {other}"),
        }
    }

    #[test]
    fn refuses_what_is_not_an_array_of_objects() {
        assert!(matches!(
            parse("{\"a\":1}"),
            Err(TrafficError::NotArray {
                found: "an object",
                ..
            })
        ));
        assert!(matches!(parse("[]"), Err(TrafficError::Empty { .. })));
        assert!(matches!(
            parse("[{}, 3]"),
            Err(TrafficError::NotObject {
                index: 1,
                found: "a number",
                ..
            })
        ));
    }

    #[test]
    fn the_shipped_traffic_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/traffic.json");
        let traffic = Traffic::load(&path).unwrap();
        assert_eq!(traffic.records.len(), 100);
    }
}
