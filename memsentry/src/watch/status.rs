//! **[C]** What the watchdog saw at its last tick: [`WatchStatus`], as Rust values, text
//! and JSON.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::cgroup::{Cgroup, MemoryEvents};
use super::psi::Psi;
use super::{Pressure, Seconds, Trigger, Watchdog};
use crate::profile::dump::store::Store;
use crate::{Bytes, json};

/// One window's growth at the last tick.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WindowStatus {
    /// The window.
    pub window: Duration,
    /// Growth of live bytes over it, bytes per second (`None`: too few points yet).
    pub live_growth: Option<f64>,
    /// Whether live bytes grow over the whole window.
    pub live_rising: bool,
    /// Growth of usage over it, bytes per second.
    pub usage_growth: Option<f64>,
    /// Whether usage grows over the whole window.
    pub usage_rising: bool,
    /// Time to the limit at this window's trend.
    pub forecast: Option<Duration>,
}

/// How often a trigger fired, and whether its condition holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerCount {
    /// The trigger.
    pub trigger: Trigger,
    /// Firings so far.
    pub fired: u64,
    /// Whether its condition holds (level triggers).
    pub active: bool,
}

/// What a [watchdog](super) saw at its last tick: [`WatchdogHandle::status`](super::WatchdogHandle::status),
/// [`status`](super::status). `Display` gives a text report.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WatchStatus {
    /// When the watchdog started.
    pub started_at: SystemTime,
    /// The last tick's time (`None` before the first).
    pub at: Option<SystemTime>,
    /// Ticks so far.
    pub ticks: u64,
    /// Ticks that ran late (a callback or handler blocked the thread).
    pub late_ticks: u64,
    /// The tick interval.
    pub interval: Duration,
    /// Live heap bytes.
    pub live_bytes: u64,
    /// The process's resident set.
    pub resident_bytes: Option<u64>,
    /// What is compared with the limit: the cgroup's usage or the resident set.
    pub usage_bytes: Option<u64>,
    /// Where usage comes from.
    pub usage_source: String,
    /// The limit forecast against.
    pub limit_bytes: Option<u64>,
    /// The cgroup read (`cgroup v2 /sys/fs/cgroup/…`), if any.
    pub cgroup: Option<String>,
    /// How pressure is watched.
    pub psi: String,
    /// The cgroup's event counters.
    pub events: Option<MemoryEvents>,
    /// Growth per window.
    pub windows: Vec<WindowStatus>,
    /// The soonest time to the limit over all windows.
    pub forecast: Option<Duration>,
    /// The pressure level now.
    pub pressure: Option<Pressure>,
    /// Each trigger's firings.
    pub triggers: Vec<TriggerCount>,
    /// The dump directory.
    pub dump_dir: Option<PathBuf>,
    /// Dumps written.
    pub dumps_written: u64,
    /// Dumps that failed.
    pub dump_errors: u64,
    /// The newest dump's pprof file.
    pub last_dump: Option<PathBuf>,
    /// When it was written.
    pub last_dump_at: Option<SystemTime>,
    /// Callbacks and pressure handlers that panicked.
    pub handler_panics: u64,
    /// Bytes of resident set given back by [`release_memory`](crate::release_memory) on
    /// critical pressure.
    pub released_bytes: u64,
}

impl WatchStatus {
    pub(super) fn new(
        settings: &Watchdog,
        cgroup: Option<&Cgroup>,
        psi: &Psi,
        store: Option<&Store>,
    ) -> WatchStatus {
        let cgroup_limit = cgroup.and_then(|c| c.read().limit);
        let usage_source = match (settings.limit, cgroup, cgroup_limit) {
            (None, Some(cgroup), Some(_)) => format!("{} usage", cgroup.describe()),
            _ => "process resident set".to_owned(),
        };
        WatchStatus {
            started_at: SystemTime::now(),
            at: None,
            ticks: 0,
            late_ticks: 0,
            interval: settings.interval,
            live_bytes: 0,
            resident_bytes: None,
            usage_bytes: None,
            usage_source,
            limit_bytes: None,
            cgroup: cgroup.map(Cgroup::describe),
            psi: psi.describe(),
            events: None,
            windows: Vec::new(),
            forecast: None,
            pressure: None,
            triggers: Trigger::ALL
                .iter()
                .map(|&trigger| TriggerCount {
                    trigger,
                    fired: 0,
                    active: false,
                })
                .collect(),
            dump_dir: store.map(|s| s.dir().to_path_buf()),
            dumps_written: 0,
            dump_errors: 0,
            last_dump: None,
            last_dump_at: None,
            handler_panics: 0,
            released_bytes: 0,
        }
    }

    /// The status as a JSON object (the endpoint's `/debug/memsentry/watchdog`).
    #[must_use]
    pub fn to_json(&self) -> String {
        let time = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(json::seconds)
        };
        let rate = |v: Option<f64>| v.map(|v| json::round(v, 1));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        json::to_string(&StatusJson {
            started_at_unix_seconds: time(Some(self.started_at)),
            at_unix_seconds: time(self.at),
            ticks: self.ticks,
            late_ticks: self.late_ticks,
            interval_seconds: json::seconds(self.interval),
            live_bytes: self.live_bytes,
            resident_bytes: self.resident_bytes,
            usage_bytes: self.usage_bytes,
            usage_source: &self.usage_source,
            limit_bytes: self.limit_bytes,
            cgroup: self.cgroup.as_deref(),
            psi: &self.psi,
            forecast_seconds: self.forecast.map(json::seconds),
            pressure: self.pressure.map(|p| p.to_string()),
            events: self.events.as_ref().map(|e| EventsJson {
                high: e.high,
                max: e.max,
                oom_kill: e.oom_kill,
            }),
            windows: self
                .windows
                .iter()
                .map(|w| WindowJson {
                    window_seconds: json::seconds(w.window),
                    live_growth_bytes_per_second: rate(w.live_growth),
                    live_rising: w.live_rising,
                    usage_growth_bytes_per_second: rate(w.usage_growth),
                    usage_rising: w.usage_rising,
                    forecast_seconds: w.forecast.map(json::seconds),
                })
                .collect(),
            triggers: TriggersJson(&self.triggers),
            dump_dir: path(&self.dump_dir),
            dumps_written: self.dumps_written,
            dump_errors: self.dump_errors,
            last_dump: path(&self.last_dump),
            last_dump_at_unix_seconds: time(self.last_dump_at),
            handler_panics: self.handler_panics,
            released_bytes: self.released_bytes,
        })
    }
}

/// [`WatchStatus::to_json`]'s document. Times are seconds since the Unix epoch, growth is
/// in bytes per second; a growth that is not finite is `null`, like one not known yet.
#[derive(Serialize)]
struct StatusJson<'a> {
    started_at_unix_seconds: Option<f64>,
    at_unix_seconds: Option<f64>,
    ticks: u64,
    late_ticks: u64,
    interval_seconds: f64,
    live_bytes: u64,
    resident_bytes: Option<u64>,
    usage_bytes: Option<u64>,
    usage_source: &'a str,
    limit_bytes: Option<u64>,
    cgroup: Option<&'a str>,
    psi: &'a str,
    forecast_seconds: Option<f64>,
    pressure: Option<String>,
    events: Option<EventsJson>,
    windows: Vec<WindowJson>,
    triggers: TriggersJson<'a>,
    dump_dir: Option<String>,
    dumps_written: u64,
    dump_errors: u64,
    last_dump: Option<String>,
    last_dump_at_unix_seconds: Option<f64>,
    handler_panics: u64,
    released_bytes: u64,
}

/// [`MemoryEvents`].
#[derive(Serialize)]
struct EventsJson {
    high: u64,
    max: u64,
    oom_kill: u64,
}

/// [`WindowStatus`].
#[derive(Serialize)]
struct WindowJson {
    window_seconds: f64,
    live_growth_bytes_per_second: Option<f64>,
    live_rising: bool,
    usage_growth_bytes_per_second: Option<f64>,
    usage_rising: bool,
    forecast_seconds: Option<f64>,
}

/// The triggers as an object keyed by their names, in [`Trigger::ALL`]'s order:
/// `{"live-bytes":{"fired":1,"active":false},...}`.
struct TriggersJson<'a>(&'a [TriggerCount]);

/// One trigger's entry.
#[derive(Serialize)]
struct TriggerJson {
    fired: u64,
    active: bool,
}

impl Serialize for TriggersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|t| {
            let entry = TriggerJson {
                fired: t.fired,
                active: t.active,
            };
            (t.trigger.name(), entry)
        }))
    }
}

impl fmt::Display for WatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| Bytes(v).to_string());
        writeln!(
            f,
            "watchdog: {} ticks every {} ({} late); pressure {}",
            self.ticks,
            Seconds(self.interval),
            self.late_ticks,
            self.pressure
                .map_or_else(|| "none".to_owned(), |p| p.to_string())
        )?;
        writeln!(
            f,
            "  live {}, resident {}, usage {} ({}), limit {}",
            Bytes(self.live_bytes),
            bytes(self.resident_bytes),
            bytes(self.usage_bytes),
            self.usage_source,
            bytes(self.limit_bytes)
        )?;
        match self.forecast {
            Some(ahead) => writeln!(f, "  forecast: the limit in {}", Seconds(ahead))?,
            None => writeln!(f, "  forecast: none (nothing rising towards a limit)")?,
        }
        writeln!(
            f,
            "  {:>8}  {:>14}  {:>14}  {:>10}",
            "window", "live growth/s", "usage growth/s", "forecast"
        )?;
        for w in &self.windows {
            let growth = |v: Option<f64>, rising: bool| {
                v.map_or_else(
                    || "-".to_owned(),
                    |v| {
                        let sign = if v < 0.0 { "-" } else { "+" };
                        let mark = if rising { " ↑" } else { "" };
                        format!("{sign}{}{mark}", Bytes(v.abs() as u64))
                    },
                )
            };
            writeln!(
                f,
                "  {:>8}  {:>14}  {:>14}  {:>10}",
                Seconds(w.window).to_string(),
                growth(w.live_growth, w.live_rising),
                growth(w.usage_growth, w.usage_rising),
                w.forecast
                    .map_or_else(|| "-".to_owned(), |d| Seconds(d).to_string())
            )?;
        }
        let fired: Vec<String> = self
            .triggers
            .iter()
            .filter(|t| t.fired > 0 || t.active)
            .map(|t| {
                format!(
                    "{} ×{}{}",
                    t.trigger,
                    t.fired,
                    if t.active { " (active)" } else { "" }
                )
            })
            .collect();
        writeln!(
            f,
            "  triggers: {}",
            if fired.is_empty() {
                "none fired".to_owned()
            } else {
                fired.join(", ")
            }
        )?;
        if let Some(cgroup) = &self.cgroup {
            write!(f, "  {cgroup}")?;
            if let Some(e) = &self.events {
                write!(
                    f,
                    ": high {}, max {}, oom_kill {}",
                    e.high, e.max, e.oom_kill
                )?;
            }
            writeln!(f)?;
        }
        writeln!(f, "  pressure watch: {}", self.psi)?;
        match &self.dump_dir {
            Some(dir) => {
                write!(
                    f,
                    "  dumps: {} written, {} failed, in {}",
                    self.dumps_written,
                    self.dump_errors,
                    dir.display()
                )?;
                if let Some(last) = &self.last_dump {
                    write!(f, "; last {}", last.display())?;
                }
                writeln!(f)
            }
            None => writeln!(f, "  dumps: off (no directory)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_every_field_once_in_a_fixed_order() {
        let status = WatchStatus {
            started_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            at: None,
            ticks: 3,
            late_ticks: 0,
            interval: Duration::from_secs(1),
            live_bytes: 4096,
            resident_bytes: Some(8192),
            usage_bytes: None,
            usage_source: "process resident set".to_owned(),
            limit_bytes: None,
            cgroup: Some("cgroup v2 /sys/fs/cgroup/a \"b\"".to_owned()),
            psi: "off".to_owned(),
            events: Some(MemoryEvents {
                high: 1,
                max: 2,
                oom_kill: 0,
            }),
            windows: vec![WindowStatus {
                window: Duration::from_millis(1500),
                live_growth: Some(12.345),
                live_rising: true,
                usage_growth: Some(f64::NAN),
                usage_rising: false,
                forecast: None,
            }],
            forecast: Some(Duration::from_secs(90)),
            pressure: Some(Pressure::Moderate),
            triggers: vec![
                TriggerCount {
                    trigger: Trigger::PreOom,
                    fired: 0,
                    active: false,
                },
                TriggerCount {
                    trigger: Trigger::LiveBytes,
                    fired: 1,
                    active: true,
                },
            ],
            dump_dir: Some(PathBuf::from("/tmp/dumps")),
            dumps_written: 1,
            dump_errors: 0,
            last_dump: None,
            last_dump_at: None,
            handler_panics: 0,
            released_bytes: 0,
        };
        assert_eq!(
            status.to_json(),
            concat!(
                r#"{"started_at_unix_seconds":1700000000.25,"at_unix_seconds":null,"#,
                r#""ticks":3,"late_ticks":0,"interval_seconds":1.0,"live_bytes":4096,"#,
                r#""resident_bytes":8192,"usage_bytes":null,"#,
                r#""usage_source":"process resident set","limit_bytes":null,"#,
                r#""cgroup":"cgroup v2 /sys/fs/cgroup/a \"b\"","psi":"off","#,
                r#""forecast_seconds":90.0,"pressure":"moderate","#,
                r#""events":{"high":1,"max":2,"oom_kill":0},"#,
                r#""windows":[{"window_seconds":1.5,"live_growth_bytes_per_second":12.3,"#,
                r#""live_rising":true,"usage_growth_bytes_per_second":null,"#,
                r#""usage_rising":false,"forecast_seconds":null}],"#,
                r#""triggers":{"pre-oom":{"fired":0,"active":false},"#,
                r#""live-bytes":{"fired":1,"active":true}},"#,
                r#""dump_dir":"/tmp/dumps","dumps_written":1,"dump_errors":0,"#,
                r#""last_dump":null,"last_dump_at_unix_seconds":null,"handler_panics":0,"#,
                r#""released_bytes":0}"#,
            )
        );
    }
}
