//! **[C]** What the watchdog saw at its last tick: [`WatchStatus`], as Rust values, text
//! and JSON.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cgroup::{Cgroup, MemoryEvents};
use super::psi::Psi;
use super::{Pressure, Seconds, Trigger, Watchdog};
use crate::Bytes;
use crate::http::json_string;
use crate::profile::dump::store::Store;

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
        let mut out = String::with_capacity(1024);
        let opt = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        let secs = |d: Option<Duration>| {
            d.map_or_else(|| "null".to_owned(), |d| format!("{:.3}", d.as_secs_f64()))
        };
        let rate = |v: Option<f64>| {
            v.filter(|v| v.is_finite())
                .map_or_else(|| "null".to_owned(), |v| format!("{v:.1}"))
        };
        let time = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(|| "null".to_owned(), |d| format!("{:.3}", d.as_secs_f64()))
        };
        let _ = write!(
            out,
            "{{\"started_at_unix_seconds\":{},\"at_unix_seconds\":{},\"ticks\":{},\
             \"late_ticks\":{},\"interval_seconds\":{:.3},\"live_bytes\":{},\
             \"resident_bytes\":{},\"usage_bytes\":{},\"usage_source\":{},\"limit_bytes\":{},\
             \"cgroup\":{},\"psi\":{},\"forecast_seconds\":{},\"pressure\":{},",
            time(Some(self.started_at)),
            time(self.at),
            self.ticks,
            self.late_ticks,
            self.interval.as_secs_f64(),
            self.live_bytes,
            opt(self.resident_bytes),
            opt(self.usage_bytes),
            json_string(&self.usage_source),
            opt(self.limit_bytes),
            self.cgroup
                .as_deref()
                .map_or_else(|| "null".to_owned(), json_string),
            json_string(&self.psi),
            secs(self.forecast),
            self.pressure
                .map_or_else(|| "null".to_owned(), |p| json_string(&p.to_string())),
        );
        match &self.events {
            Some(e) => {
                let _ = write!(
                    out,
                    "\"events\":{{\"high\":{},\"max\":{},\"oom_kill\":{}}},",
                    e.high, e.max, e.oom_kill
                );
            }
            None => out.push_str("\"events\":null,"),
        }
        out.push_str("\"windows\":[");
        for (i, w) in self.windows.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"window_seconds\":{:.3},\"live_growth_bytes_per_second\":{},\
                 \"live_rising\":{},\"usage_growth_bytes_per_second\":{},\"usage_rising\":{},\
                 \"forecast_seconds\":{}}}",
                w.window.as_secs_f64(),
                rate(w.live_growth),
                w.live_rising,
                rate(w.usage_growth),
                w.usage_rising,
                secs(w.forecast)
            );
        }
        out.push_str("],\"triggers\":{");
        for (i, t) in self.triggers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "\"{}\":{{\"fired\":{},\"active\":{}}}",
                t.trigger, t.fired, t.active
            );
        }
        let path = |p: &Option<PathBuf>| {
            p.as_ref().map_or_else(
                || "null".to_owned(),
                |p| json_string(&p.display().to_string()),
            )
        };
        let _ = write!(
            out,
            "}},\"dump_dir\":{},\"dumps_written\":{},\"dump_errors\":{},\"last_dump\":{},\
             \"last_dump_at_unix_seconds\":{},\"handler_panics\":{},\"released_bytes\":{}}}",
            path(&self.dump_dir),
            self.dumps_written,
            self.dump_errors,
            path(&self.last_dump),
            time(self.last_dump_at),
            self.handler_panics,
            self.released_bytes
        );
        out
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
