//! **[H]** `MEMSENTRY*` environment variables: names, and parsing of their values.
//!
//! Pure functions over byte slices, with no allocation: they run inside the allocator,
//! on the first allocation of the process (see `hot::control`).

/// Every variable memsentry reads starts with this.
pub(crate) const PREFIX: &[u8] = b"MEMSENTRY";

/// The names memsentry understands, as printed in the "unknown variable" warning.
pub(crate) const KNOWN_VARS_TEXT: &[u8] =
    b"MEMSENTRY, MEMSENTRY_SAMPLE_RATE, MEMSENTRY_HTTP_ADDR, MEMSENTRY_HTTP_TOKEN, MEMSENTRY_WATCH, MEMSENTRY_BUDGETS";

/// What an environment variable whose name starts with [`PREFIX`] means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnvVar {
    /// `MEMSENTRY` with a value that says on (`true`) or off (`false`).
    Switch(bool),
    /// `MEMSENTRY` with a value that is not understood.
    BadSwitch,
    /// `MEMSENTRY_SAMPLE_RATE` with a byte count.
    SampleRate(u64),
    /// `MEMSENTRY_SAMPLE_RATE` with a value that is not a byte count.
    BadSampleRate,
    /// A name memsentry knows but reads later, outside the allocator
    /// (`MEMSENTRY_HTTP_ADDR`, read by the HTTP endpoint; `MEMSENTRY_WATCH`, by the
    /// watchdog; `MEMSENTRY_BUDGETS`, by the budget baseline check).
    ReadLater,
    /// A name memsentry does not know: probably a typo.
    Unknown,
}

/// Classifies one `MEMSENTRY*` variable.
pub(crate) fn classify(name: &[u8], value: &[u8]) -> EnvVar {
    match name {
        b"MEMSENTRY" => parse_switch(value).map_or(EnvVar::BadSwitch, EnvVar::Switch),
        b"MEMSENTRY_SAMPLE_RATE" => {
            parse_bytes(value).map_or(EnvVar::BadSampleRate, EnvVar::SampleRate)
        }
        b"MEMSENTRY_HTTP_ADDR"
        | b"MEMSENTRY_HTTP_TOKEN"
        | b"MEMSENTRY_WATCH"
        | b"MEMSENTRY_BUDGETS" => EnvVar::ReadLater,
        _ => EnvVar::Unknown,
    }
}

/// Parses a byte count: digits, optionally followed by a binary unit (`B`, `KiB`, `MiB`,
/// `GiB`, in any case), surrounding blanks ignored: `524288`, `512KiB`, `1MiB`, `0`.
/// Decimal units (`KB`, `MB`) are refused rather than guessed at.
pub(crate) fn parse_bytes(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, unit) = value.split_at(digits);
    if number.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &digit in number {
        n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    let unit = unit.trim_ascii_start();
    let shift = if unit.is_empty() || unit.eq_ignore_ascii_case(b"b") {
        0
    } else if unit.eq_ignore_ascii_case(b"kib") {
        10
    } else if unit.eq_ignore_ascii_case(b"mib") {
        20
    } else if unit.eq_ignore_ascii_case(b"gib") {
        30
    } else {
        return None;
    };
    n.checked_mul(1 << shift)
}

/// Parses an on/off value: `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`, in any case,
/// surrounding blanks ignored.
pub(crate) fn parse_switch(value: &[u8]) -> Option<bool> {
    let value = value.trim_ascii();
    const ON: [&[u8]; 4] = [b"on", b"true", b"yes", b"1"];
    const OFF: [&[u8]; 4] = [b"off", b"false", b"no", b"0"];
    if ON.iter().any(|word| value.eq_ignore_ascii_case(word)) {
        Some(true)
    } else if OFF.iter().any(|word| value.eq_ignore_ascii_case(word)) {
        Some(false)
    } else {
        None
    }
}

/// At most the first 64 bytes of `text`, so a warning stays one readable line.
pub(crate) fn clip(text: &[u8]) -> &[u8] {
    text.get(..64).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_values() {
        for on in ["on", "ON", " true ", "Yes", "1"] {
            assert_eq!(parse_switch(on.as_bytes()), Some(true), "{on:?}");
        }
        for off in ["off", "Off", "false", "NO", "0", "\toff\n"] {
            assert_eq!(parse_switch(off.as_bytes()), Some(false), "{off:?}");
        }
        for bad in ["", "of", "2", "enabled", "off please"] {
            assert_eq!(parse_switch(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(b"MEMSENTRY", b"off"), EnvVar::Switch(false));
        assert_eq!(classify(b"MEMSENTRY", b"maybe"), EnvVar::BadSwitch);
        assert_eq!(classify(b"MEMSENTRY_SAMPLERATE", b"1"), EnvVar::Unknown);
        assert_eq!(
            classify(b"MEMSENTRY_HTTP_ADDR", b"0.0.0.0:6060"),
            EnvVar::ReadLater
        );
        assert_eq!(
            classify(b"MEMSENTRY_SAMPLE_RATE", b"1MiB"),
            EnvVar::SampleRate(1 << 20)
        );
        assert_eq!(
            classify(b"MEMSENTRY_SAMPLE_RATE", b"lots"),
            EnvVar::BadSampleRate
        );
    }

    #[test]
    fn byte_counts() {
        for (text, bytes) in [
            ("524288", 524_288),
            ("512KiB", 524_288),
            ("512 kib", 524_288),
            ("1MiB", 1 << 20),
            ("2GiB", 2 << 30),
            ("0", 0),
            ("1", 1),
            (" 64B ", 64),
        ] {
            assert_eq!(parse_bytes(text.as_bytes()), Some(bytes), "{text:?}");
        }
        for bad in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "512KB",
            "1M",
            "12 34",
            "99999999999999999999",
            "17179869184GiB",
        ] {
            assert_eq!(parse_bytes(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip(b"short"), b"short");
        assert_eq!(clip(&[b'x'; 100]).len(), 64);
    }
}
