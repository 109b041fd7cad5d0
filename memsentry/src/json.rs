//! **[C]** What the JSON documents share (the endpoint's snapshot, tasks, dumps, leak
//! suspects, and [`WatchStatus::to_json`](crate::watch::WatchStatus::to_json)): each is a
//! private `#[derive(Serialize)]` type that names its fields, written by serde_json, with
//! numbers rounded to the precision their field carries.

use std::time::Duration;

use serde::Serialize;

/// `value` as compact JSON.
///
/// # Panics
///
/// If `value` cannot be written, a programmer's error: serde_json fails only on a map
/// whose keys are not strings or a `Serialize` impl that fails of its own accord, and the
/// documents here have neither (a non-finite float is written as `null`).
pub(crate) fn to_string(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .expect("JSON documents are structs, sequences and string-keyed maps")
}

/// `value` rounded to `decimals` places, the precision its field carries: serde_json then
/// writes the shortest form that reads back as the rounded value (`1.235` for 1.2345678 s
/// to the millisecond; `2.0`, keeping the point, for a whole float). Non-finite values
/// stay so, and are written as `null`.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A duration in seconds, to the millisecond.
pub(crate) fn seconds(duration: Duration) -> f64 {
    round(duration.as_secs_f64(), 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Document<'a> {
        name: &'a str,
        seconds: f64,
        rate: Option<f64>,
        missing: Option<u64>,
    }

    #[test]
    fn strings_are_escaped_and_numbers_rounded() {
        let document = Document {
            name: "a\"b\\c\n\u{1}é",
            seconds: seconds(Duration::from_nanos(1_234_567_891)),
            rate: Some(round(f64::NAN, 1)),
            missing: None,
        };
        assert_eq!(
            to_string(&document),
            r#"{"name":"a\"b\\c\n\u0001é","seconds":1.235,"rate":null,"missing":null}"#
        );
        assert_eq!(to_string(&round(2.0, 1)), "2.0");
        assert_eq!(
            to_string(&round(1_733_300_000.123_456_7, 6)),
            "1733300000.123457"
        );
        assert_eq!(to_string(&round(0.000_4, 3)), "0.0");
        assert_eq!(to_string(&round(f64::INFINITY, 3)), "null");
    }
}
