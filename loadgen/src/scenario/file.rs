//! `--scenario FILE`: the TOML schema (README, "Scenario files"), read and checked before
//! anything is sent. Every problem names the file, the line and the key, as an editor
//! would jump to it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;

use super::check::{Check, Expected, pointer_problem};
use super::{Body, Flow, Scenarios, Step};
use crate::duration::{BareUnit, parse_span, parse_wait};
use crate::users_plan::{UsersPlan, step_secs};

/// A scenario file that cannot run, and where.
#[derive(Debug, thiserror::Error)]
#[error("--scenario {}:{line}: {key}: {why}", path.display())]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: usize,
    pub key: String,
    pub why: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    scenario: Vec<Spanned<RawFlow>>,
    #[serde(default)]
    stage: Vec<RawStage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Option<String>,
    weight: Option<Spanned<i64>>,
    wait: Option<Spanned<String>>,
    #[serde(default)]
    request: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    record: Option<Spanned<bool>>,
    json: Option<Spanned<toml::Value>>,
    text: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    status: Option<Spanned<toml::Value>>,
    check: Option<Spanned<RawCheck>>,
    think: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    pointer: Option<Spanned<String>>,
    equals: Option<toml::Value>,
    contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    users: Spanned<i64>,
    duration: Spanned<String>,
}

/// The methods a request may use: Goose's.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// Reads and checks the scenario file at `path`; nothing is sent.
pub fn read(path: &Path) -> Result<Scenarios, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        path: path.to_path_buf(),
        line: 0,
        key: "(file)".into(),
        why: format!("cannot read it ({e}); give the path of a scenario file, such as examples/scenarios/seed.toml"),
    })?;
    let checker = Checker {
        path,
        text: &text,
        dir: path.parent().unwrap_or(Path::new(".")),
    };
    let raw: RawFile = toml::from_str(&text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        checker.error(span.clone(), &checker.token(span), e.message().trim())
    })?;
    checker.scenarios(raw)
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    /// Body files are read relative to the scenario file.
    dir: &'a Path,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, key: &str, why: impl Into<String>) -> ScenarioError {
        ScenarioError {
            path: self.path.to_path_buf(),
            line: self.line(span.start),
            key: key.to_string(),
            why: why.into(),
        }
    }

    /// The line, from 1, that byte `offset` is on.
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The key TOML's own error at `span` is about: the key its line assigns (`path` in
    /// `path = 5`), or the word at the span (an unknown key itself).
    fn token(&self, span: Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        if let Some((key, _)) = self.text[line_start..start].split_once('=') {
            let key = key.trim().trim_matches('"');
            if !key.is_empty() {
                return key.to_string();
            }
        }
        let word: String = self.text[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '=' | ',' | '}' | ']'))
            .take(40)
            .collect();
        if word.is_empty() {
            "(file)".into()
        } else {
            word
        }
    }

    fn scenarios(&self, raw: RawFile) -> Result<Scenarios, ScenarioError> {
        if raw.scenario.is_empty() {
            return Err(self.error(
                0..0,
                "scenario",
                "the file has no [[scenario]]; see examples/scenarios/seed.toml",
            ));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut flows = Vec::new();
        for (index, flow) in raw.scenario.into_iter().enumerate() {
            flows.push(self.flow(index, flow, &mut names)?);
        }
        if flows.iter().all(|f| f.weight == 0) {
            return Err(self.error(
                0..0,
                "weight",
                "every scenario has weight 0, so no user would run; give one a weight of 1 or more",
            ));
        }
        let stages = if raw.stage.is_empty() {
            None
        } else {
            Some(self.stages(raw.stage)?)
        };
        Ok(Scenarios {
            flows,
            stages,
            source: Some(self.path.to_path_buf()),
        })
    }

    fn flow(
        &self,
        index: usize,
        raw: Spanned<RawFlow>,
        names: &mut HashMap<String, usize>,
    ) -> Result<Flow, ScenarioError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let weight = match raw.weight {
            None => 1,
            Some(w) => usize::try_from(*w.get_ref()).map_err(|_| {
                self.error(
                    w.span(),
                    "weight",
                    format!("{} is negative; give 0 (off) or more", w.get_ref()),
                )
            })?,
        };
        let wait = raw
            .wait
            .map(|w| {
                parse_wait(w.get_ref()).map_err(|e| self.error(w.span(), "wait", e.to_string()))
            })
            .transpose()?;
        if raw.request.is_empty() {
            return Err(self.error(
                span,
                "request",
                "this scenario has no [[scenario.request]]; give it at least one",
            ));
        }
        let steps = raw
            .request
            .into_iter()
            .map(|step| self.step(step, names))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Flow {
            name: raw
                .name
                .unwrap_or_else(|| format!("scenario {}", index + 1)),
            weight,
            wait,
            steps,
        })
    }

    fn step(
        &self,
        raw: Spanned<RawStep>,
        names: &mut HashMap<String, usize>,
    ) -> Result<Step, ScenarioError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let method = self.method(raw.method.as_ref())?;
        let path = raw.path.get_ref().clone();
        if path.contains("://") {
            return Err(self.error(
                raw.path.span(),
                "path",
                format!("{path:?} is a URL; a path is relative to --host, so put the host in --host and the path here"),
            ));
        }
        let (name, name_span) = match &raw.name {
            Some(name) => (name.get_ref().clone(), name.span()),
            None => (format!("{method} {path}"), span.clone()),
        };
        if name.trim().is_empty() {
            return Err(self.error(name_span, "name", "a request's name may not be empty"));
        }
        let line = self.line(name_span.start);
        if let Some(first) = names.insert(name.clone(), line) {
            return Err(self.error(
                name_span,
                "name",
                format!("{name:?} is already the name of the request on line {first}; names key the reports, so give each request its own"),
            ));
        }
        let (body, content_type) = self.body(&raw)?;
        let headers = self.headers(raw.headers.as_ref(), content_type)?;
        let expect = raw
            .status
            .as_ref()
            .map(|s| self.status(s))
            .transpose()?
            .unwrap_or_default();
        let check = raw.check.map(|c| self.check(c)).transpose()?;
        let think = raw
            .think
            .map(|t| think(t.get_ref()).map_err(|why| self.error(t.span(), "think", why)))
            .transpose()?;
        Ok(Step {
            name,
            method,
            path,
            headers,
            body,
            expect,
            check,
            think,
        })
    }

    fn method(&self, raw: Option<&Spanned<String>>) -> Result<reqwest::Method, ScenarioError> {
        let Some(raw) = raw else {
            return Ok(reqwest::Method::GET);
        };
        let upper = raw.get_ref().to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(self.error(
                raw.span(),
                "method",
                format!(
                    "{:?} is not a method loadgen sends; use one of {}",
                    raw.get_ref(),
                    METHODS.join(", ")
                ),
            ));
        }
        Ok(upper.parse().expect("each of METHODS parses"))
    }

    /// The body, and the content type it implies when the headers name none.
    fn body(&self, raw: &RawStep) -> Result<(Body, Option<&'static str>), ScenarioError> {
        let given: Vec<(&str, Range<usize>)> = [
            raw.record
                .as_ref()
                .filter(|r| *r.get_ref())
                .map(|r| ("record", r.span())),
            raw.json.as_ref().map(|j| ("json", j.span())),
            raw.text.as_ref().map(|t| ("text", t.span())),
            raw.file.as_ref().map(|f| ("file", f.span())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let [_, (second, span), ..] = given.as_slice() {
            return Err(self.error(
                span.clone(),
                second,
                format!(
                    "a request has one body, but this one has {}; keep one",
                    given.iter().map(|g| g.0).collect::<Vec<_>>().join(" and ")
                ),
            ));
        }
        if raw.record.as_ref().is_some_and(|r| *r.get_ref()) {
            return Ok((Body::Record, Some("application/json")));
        }
        if let Some(json) = &raw.json {
            let bytes = serde_json::to_vec(json.get_ref())
                .map_err(|e| self.error(json.span(), "json", format!("not a JSON value: {e}")))?;
            return Ok((Body::Fixed(Bytes::from(bytes)), Some("application/json")));
        }
        if let Some(text) = &raw.text {
            let bytes = Bytes::from(text.get_ref().clone());
            return Ok((Body::Fixed(bytes), Some("text/plain; charset=utf-8")));
        }
        if let Some(file) = &raw.file {
            let path = self.dir.join(file.get_ref());
            let bytes = std::fs::read(&path).map_err(|e| {
                self.error(
                    file.span(),
                    "file",
                    format!("cannot read the body file {} ({e}); a body file's path is relative to the scenario file", path.display()),
                )
            })?;
            let json = path.extension().is_some_and(|e| e == "json");
            let kind = if json {
                "application/json"
            } else {
                "application/octet-stream"
            };
            return Ok((Body::Fixed(Bytes::from(bytes)), Some(kind)));
        }
        Ok((Body::None, None))
    }

    fn headers(
        &self,
        raw: Option<&Spanned<BTreeMap<String, String>>>,
        content_type: Option<&'static str>,
    ) -> Result<HeaderMap, ScenarioError> {
        let mut headers = HeaderMap::new();
        if let Some(raw) = raw {
            for (name, value) in raw.get_ref() {
                let bad = |why: String| self.error(raw.span(), "headers", why);
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| bad(format!("{name:?} is not a header name")))?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    bad(format!(
                        "{name}: {value:?} is not a header value (visible ASCII)"
                    ))
                })?;
                headers.append(name, value);
            }
        }
        if let Some(kind) = content_type.filter(|_| !headers.contains_key(CONTENT_TYPE)) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        }
        Ok(headers)
    }

    fn status(&self, raw: &Spanned<toml::Value>) -> Result<Expected, ScenarioError> {
        let values = match raw.get_ref() {
            toml::Value::Array(values) => values.clone(),
            one => vec![one.clone()],
        };
        let bad = |why: String| self.error(raw.span(), "status", why);
        let mut expected = Expected {
            codes: Vec::new(),
            classes: Vec::new(),
        };
        for value in &values {
            match value {
                toml::Value::Integer(code) if (100..=599).contains(code) => {
                    expected.codes.push(*code as u16);
                }
                toml::Value::Integer(code) => {
                    return Err(bad(format!(
                        "{code} is not an HTTP status; give codes from 100 to 599, or classes such as \"2xx\""
                    )));
                }
                toml::Value::String(class)
                    if class.len() == 3
                        && class.ends_with("xx")
                        && matches!(class.as_bytes()[0], b'1'..=b'5') =>
                {
                    expected.classes.push(u16::from(class.as_bytes()[0] - b'0'));
                }
                other => {
                    return Err(bad(format!(
                        "{other} is not a status; give codes such as 201, or classes such as \"2xx\""
                    )));
                }
            }
        }
        if values.is_empty() {
            return Err(bad(
                "an empty list would fail every request; give codes such as [200, 201]".into(),
            ));
        }
        Ok(expected)
    }

    fn check(&self, raw: Spanned<RawCheck>) -> Result<Check, ScenarioError> {
        let span = raw.span();
        let raw = raw.into_inner();
        match (raw.pointer, raw.equals, raw.contains) {
            (Some(pointer), Some(equals), None) => {
                if let Some(why) = pointer_problem(pointer.get_ref()) {
                    return Err(self.error(pointer.span(), "check.pointer", why));
                }
                let equals = serde_json::to_value(&equals).map_err(|e| {
                    self.error(span.clone(), "check.equals", format!("not a JSON value: {e}"))
                })?;
                Ok(Check::Pointer {
                    pointer: pointer.into_inner(),
                    equals,
                })
            }
            (None, None, Some(text)) if !text.is_empty() => Ok(Check::Contains(text)),
            _ => Err(self.error(
                span,
                "check",
                "give either pointer and equals ({ pointer = \"/status\", equals = \"ok\" }) or contains ({ contains = \"ok\" })",
            )),
        }
    }

    fn stages(&self, raw: Vec<RawStage>) -> Result<UsersPlan, ScenarioError> {
        let mut steps = Vec::new();
        let mut last = 0..0;
        for stage in raw {
            let users = usize::try_from(*stage.users.get_ref()).map_err(|_| {
                self.error(
                    stage.users.span(),
                    "stage.users",
                    format!(
                        "{} is negative; give 0 or more users",
                        stage.users.get_ref()
                    ),
                )
            })?;
            let secs = step_secs(stage.duration.get_ref())
                .map_err(|why| self.error(stage.duration.span(), "stage.duration", why))?;
            last = stage.duration.span();
            steps.push((users, secs));
        }
        UsersPlan::new(steps).map_err(|why| self.error(last, "stage", why))
    }
}

/// A think time: `50ms`, or a uniform range `10ms..50ms`.
fn think(text: &str) -> Result<(Duration, Duration), String> {
    if text.contains("..") {
        parse_wait(text).map_err(|e| e.to_string())
    } else {
        let span = parse_span(text, BareUnit::Millis).map_err(|e| e.to_string())?;
        Ok((span, span))
    }
}
