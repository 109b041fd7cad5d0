//! **[C]** The watchdog's figures through the `metrics` facade, published by the
//! [reporter](crate::report) when a watchdog runs.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::WatchStatus;

const FORECAST: &str = "memsentry_forecast_seconds_to_limit";
const GROWTH: &str = "memsentry_growth_bytes_per_second";
const TRIGGERS: &str = "memsentry_watchdog_triggers_total";
const DUMPS: &str = "memsentry_watchdog_dumps_total";
const DUMP_ERRORS: &str = "memsentry_watchdog_dump_errors_total";
const LAST_DUMP: &str = "memsentry_watchdog_last_dump_timestamp_seconds";
const LATE_TICKS: &str = "memsentry_watchdog_late_ticks_total";

pub(crate) fn describe() {
    describe_gauge!(
        FORECAST,
        Unit::Seconds,
        "Time until the memory limit at the current growth (soonest over the watchdog's windows); NaN: no forecast (nothing rising towards a limit)."
    );
    describe_gauge!(
        GROWTH,
        Unit::Bytes,
        "Robust (Theil-Sen) growth per second of live bytes or usage over each watchdog window; NaN: too few points yet."
    );
    describe_counter!(
        TRIGGERS,
        Unit::Count,
        "Watchdog trigger firings, by trigger."
    );
    describe_counter!(DUMPS, Unit::Count, "Heap dumps the watchdog wrote.");
    describe_counter!(
        DUMP_ERRORS,
        Unit::Count,
        "Heap dumps the watchdog failed to write."
    );
    describe_gauge!(
        LAST_DUMP,
        Unit::Seconds,
        "Unix time of the watchdog's last heap dump; 0: none yet."
    );
    describe_counter!(
        LATE_TICKS,
        Unit::Count,
        "Watchdog ticks that ran late (a callback or pressure handler blocked)."
    );
}

/// One reporter tick's worth of the running watchdog's figures.
pub(crate) fn publish(status: &WatchStatus) {
    gauge!(FORECAST).set(status.forecast.map_or(f64::NAN, |d| d.as_secs_f64()));
    for window in &status.windows {
        let label = format!("{}s", window.window.as_secs_f64());
        for (series, value) in [("live", window.live_growth), ("usage", window.usage_growth)] {
            gauge!(GROWTH, "series" => series, "window" => label.clone())
                .set(value.unwrap_or(f64::NAN));
        }
    }
    for trigger in &status.triggers {
        counter!(TRIGGERS, "trigger" => trigger.trigger.name()).absolute(trigger.fired);
    }
    counter!(DUMPS).absolute(status.dumps_written);
    counter!(DUMP_ERRORS).absolute(status.dump_errors);
    counter!(LATE_TICKS).absolute(status.late_ticks);
    let last = status
        .last_dump_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    gauge!(LAST_DUMP).set(last);
}
