//! Time spans as people type them on the command line (`60s`, `1m30s`, `250ms`) and the
//! `--wait MIN..MAX` range, parsed once so every later stage works with `Duration`.

use std::time::Duration;

use thiserror::Error;

/// Why a time span was refused; the message quotes the input and shows a valid form.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("'{input}' is not a time span; write it like 60s, 1m30s, 250ms or 500us")]
    Invalid { input: String },
    #[error("'{input}' is not a wait range; write it as MIN..MAX, like 100ms..900ms")]
    InvalidRange { input: String },
    #[error("wait range '{input}' has MIN greater than MAX")]
    Reversed { input: String },
}

/// What a bare number (no unit) means: Locust reads `-t 60` as seconds, Goose reads a
/// threshold `p95<500` as milliseconds, and each caller keeps its tool's habit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    Seconds,
    Millis,
}

/// Parses a span made of one or more `<number><unit>` parts, largest unit first by habit
/// but in any order (`1h30m`, `90s`, `1.5s`, `250ms`). Units: h, m, s, ms, us, in either case.
pub fn parse_span(input: &str, bare: BareUnit) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(number) = text.parse::<f64>() {
        let seconds = match bare {
            BareUnit::Seconds => number,
            BareUnit::Millis => number / 1000.0,
        };
        return Duration::try_from_secs_f64(seconds).map_err(|_| invalid());
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match rest[..unit_len].to_ascii_lowercase().as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            _ => return Err(invalid()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// Parses `MIN..MAX`; a bare number in it is milliseconds, as waits are short.
pub fn parse_wait(input: &str) -> Result<(Duration, Duration), DurationError> {
    let (min, max) = input
        .split_once("..")
        .ok_or_else(|| DurationError::InvalidRange {
            input: input.to_string(),
        })?;
    let range_error = |_| DurationError::InvalidRange {
        input: input.to_string(),
    };
    let min = parse_span(min, BareUnit::Millis).map_err(range_error)?;
    let max = parse_span(max, BareUnit::Millis).map_err(range_error)?;
    if min > max {
        return Err(DurationError::Reversed {
            input: input.to_string(),
        });
    }
    Ok((min, max))
}

/// Short human form for tables and logs: `850us`, `12.3ms`, `1.25s`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}us", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{}ms", trim_float(ms))
    } else {
        format!("{}s", trim_float(ms / 1000.0))
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_with_units() {
        let s = |t| parse_span(t, BareUnit::Seconds).unwrap();
        assert_eq!(s("60s"), Duration::from_secs(60));
        assert_eq!(s("1m30s"), Duration::from_secs(90));
        assert_eq!(s("1h"), Duration::from_secs(3600));
        assert_eq!(s("250ms"), Duration::from_millis(250));
        assert_eq!(s("500us"), Duration::from_micros(500));
        assert_eq!(s("1.5S"), Duration::from_millis(1500));
    }

    #[test]
    fn bare_numbers_follow_the_callers_unit() {
        assert_eq!(
            parse_span("60", BareUnit::Seconds).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_span("500", BareUnit::Millis).unwrap(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn junk_is_refused() {
        for bad in ["", "abc", "5 junk", "10x", "ms", "-3s", "1.2.3s"] {
            assert!(
                parse_span(bad, BareUnit::Seconds).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn wait_ranges() {
        assert_eq!(
            parse_wait("100ms..900ms").unwrap(),
            (Duration::from_millis(100), Duration::from_millis(900))
        );
        assert_eq!(
            parse_wait("0..0").unwrap(),
            (Duration::ZERO, Duration::ZERO)
        );
        assert!(matches!(
            parse_wait("900ms..100ms"),
            Err(DurationError::Reversed { .. })
        ));
        assert!(matches!(
            parse_wait("100ms"),
            Err(DurationError::InvalidRange { .. })
        ));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_ms(0.25), "250us");
        assert_eq!(format_ms(12.3), "12.3ms");
        assert_eq!(format_ms(1250.0), "1.25s");
    }
}
