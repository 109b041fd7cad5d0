//! **[C]** `MEMSENTRY_WATCH`: watchdog settings from the environment.

use std::io::Write;
use std::time::Duration;

use super::{ENV_VAR, Watchdog};
use crate::config::{parse_bytes, parse_switch};

/// Applies each `key=value` of `value` to `settings`; a pair it does not understand gets
/// one warning on `warn` and leaves its setting as it was.
pub(super) fn apply(mut settings: Watchdog, value: &str, warn: &mut dyn Write) -> Watchdog {
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let (key, value) = (key.trim(), value.trim());
        match set(settings.clone(), key, value) {
            Ok(updated) => settings = updated,
            Err(expected) => {
                let _ = writeln!(
                    warn,
                    "memsentry: {ENV_VAR}: ignoring {item:?}: {expected}; keeping the default"
                );
            }
        }
    }
    settings
}

/// One setting; `Err` says what was expected.
fn set(settings: Watchdog, key: &str, value: &str) -> Result<Watchdog, &'static str> {
    const DURATION: &str = "expected a duration such as 500ms, 1s, 15m, 1h";
    const SIZE: &str = "expected a size such as 512MiB or 2GiB";
    const SWITCH: &str = "expected on or off";
    let bytes = || parse_bytes(value.as_bytes()).ok_or(SIZE);
    let duration = || parse_duration(value).ok_or(DURATION);
    let switch = || parse_switch(value.as_bytes()).ok_or(SWITCH);
    Ok(match key {
        "dir" if !value.is_empty() => settings.dir(value),
        "dir" => return Err("expected a directory"),
        "limit" => settings.limit(bytes()?),
        "interval" => settings.interval(duration()?),
        "windows" => {
            let windows: Option<Vec<Duration>> = value.split('/').map(parse_duration).collect();
            settings.windows(windows.ok_or("expected durations separated by /, such as 1m/5m/15m")?)
        }
        "forecast" => settings.forecast(duration()?),
        "pre-oom" => {
            let percent: f64 = value
                .trim_end_matches('%')
                .parse()
                .map_err(|_| "expected a percentage such as 90")?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err("expected a percentage in (0, 100]");
            }
            settings.pre_oom(percent / 100.0)
        }
        "live" => settings.live_bytes(bytes()?),
        "cooldown" => settings.cooldown(duration()?),
        "keep" => match value.parse::<usize>() {
            Ok(keep) if keep > 0 => settings.keep(keep),
            _ => return Err("expected a whole number of dumps, at least 1"),
        },
        "max-bytes" => settings.max_bytes(bytes()?),
        "growth" => settings.sustained_growth(switch()?),
        "psi" => settings.psi(switch()?),
        "task-leaks" => settings.task_leaks(switch()?),
        "release" => settings.release_on_critical(switch()?),
        "svg" => settings.svg(switch()?),
        _ => {
            return Err(
                "unknown key (dir, limit, interval, windows, forecast, pre-oom, live, \
                 cooldown, keep, max-bytes, growth, psi, task-leaks, release, svg)",
            );
        }
    })
}

/// `500ms`, `1s`, `90s`, `15m`, `1h`, `0`: a whole number and a unit.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => return Some(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" if number == 0 => 0,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration(" 2h "), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "1.5s", "s", "-1s", "1d", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn good_settings_apply_and_bad_ones_warn_once_each() {
        let mut warnings = Vec::new();
        let settings = apply(
            Watchdog::new(),
            "dir=/tmp/x, limit=2GiB,interval=250ms,windows=10s/1m,forecast=5m,pre-oom=80,\
             keep=3,max-bytes=1MiB,live=1GiB,growth=off,psi=off,task-leaks=on,release=on,\
             cooldown=1m,limit=lots,keep=0,colour=blue,windows=1m/x",
            &mut warnings,
        );
        assert_eq!(
            settings.dir.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
        assert_eq!(settings.limit, Some(2 << 30));
        assert_eq!(settings.interval, Duration::from_millis(250));
        assert_eq!(
            settings.windows,
            [Duration::from_secs(10), Duration::from_secs(60)]
        );
        assert_eq!(settings.forecast, Duration::from_secs(300));
        assert!((settings.pre_oom - 0.8).abs() < 1e-9);
        assert_eq!((settings.keep, settings.max_bytes), (3, 1 << 20));
        assert_eq!(settings.live_bytes, Some(1 << 30));
        assert!(!settings.growth && settings.psi.is_none());
        assert!(settings.task_leaks && settings.release_on_critical);
        assert_eq!(settings.cooldown, Duration::from_secs(60));
        let warnings = String::from_utf8(warnings).unwrap();
        assert_eq!(warnings.lines().count(), 4, "{warnings}");
        assert!(warnings.contains("ignoring \"limit=lots\": expected a size"));
        assert!(warnings.contains("ignoring \"colour=blue\": unknown key"));
        assert!(settings.check().is_ok());
    }
}
