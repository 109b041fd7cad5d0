//! **[C]** Leak suspects: call sites whose in-use bytes grow steadily, profile after
//! profile.
//!
//! [`observe_leaks`] takes a heap profile and adds each call site's in-use bytes to its
//! series (bounded: the last [`POINTS`] observations of at most [`SITES`] sites, those
//! holding most); [`track_leaks`] does it on a thread every interval. [`leak_suspects`]
//! ranks the sites whose series rises over its whole span, in both halves and out of its
//! noise (the watchdog's robust Theil–Sen fit): a site that grew and was freed, or a
//! cache that filled to its bound and stays there, does not qualify; a steady leak does.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::{SampleType, heap};
use crate::periodic::{First, Periodic};
use crate::watch::trend::{Fitter, Point, Series};
use crate::{Bytes, json};

/// Observations kept per site.
pub(crate) const POINTS: usize = 64;
/// Sites followed at most.
pub(crate) const SITES: usize = 256;
/// The innermost frames that name a site.
const SITE_FRAMES: usize = 12;

/// One followed call site.
struct Site {
    /// The call stack's innermost function names, leaf first (allocator frames trimmed).
    stack: Vec<String>,
    series: Series,
}

struct Observations {
    started: Option<Instant>,
    sites: HashMap<Vec<String>, Site>,
    observations: u64,
}

static OBSERVATIONS: Mutex<Option<Observations>> = Mutex::new(None);

/// Takes a heap profile now and adds every call site's in-use bytes to its series (the
/// last 64 observations of at most 256 sites, those holding most; a site is its innermost
/// 12 frames), for [`leak_suspects`]. [`track_leaks`] calls it every interval.
pub fn observe_leaks() {
    let profile = heap();
    // The series' own memory is bookkeeping: not sampled (it would be a site itself).
    let _guard = crate::hot::sampler::Guard::enter();
    let mut in_use: HashMap<Vec<String>, f64> = HashMap::new();
    for sample in profile.samples() {
        // A site is its innermost frames: walks by different unwinders may differ in the
        // outermost (the C runtime's thread entry), which says nothing of the site.
        let stack: Vec<String> = profile
            .frames(sample)
            .take(SITE_FRAMES)
            .map(|f| {
                if f.function.is_empty() {
                    format!("{:#x}", f.address)
                } else {
                    f.function.to_owned()
                }
            })
            .collect();
        *in_use.entry(stack).or_default() += SampleType::InuseSpace.value(sample);
    }
    let mut guard = OBSERVATIONS.lock().unwrap_or_else(PoisonError::into_inner);
    let observations = guard.get_or_insert_with(|| Observations {
        started: None,
        sites: HashMap::new(),
        observations: 0,
    });
    let started = *observations.started.get_or_insert_with(Instant::now);
    let t = started.elapsed().as_secs_f64();
    observations.observations += 1;
    // Sites seen before and gone now hold nothing.
    for (stack, site) in &mut observations.sites {
        if !in_use.contains_key(stack) {
            site.series.push(Point { t, value: 0.0 });
        }
    }
    for (stack, bytes) in in_use {
        let site = observations
            .sites
            .entry(stack.clone())
            .or_insert_with(|| Site {
                stack,
                series: Series::with_capacity(POINTS),
            });
        site.series.push(Point { t, value: bytes });
    }
    if observations.sites.len() > SITES {
        // Keep the sites holding most now.
        let mut held: Vec<(Vec<String>, f64)> = observations
            .sites
            .iter()
            .map(|(k, s)| (k.clone(), s.series.last().map_or(0.0, |p| p.value)))
            .collect();
        held.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (stack, _) in held.into_iter().skip(SITES) {
            observations.sites.remove(&stack);
        }
    }
}

/// Forgets every observation (tests and benchmarks start afresh).
pub fn reset_leaks() {
    *OBSERVATIONS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// A call site whose in-use bytes grow steadily: see [`leak_suspects`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Suspect {
    /// The call stack's innermost functions (up to 12), leaf first.
    pub stack: Vec<String>,
    /// Growth of its in-use bytes, per second (Theil–Sen over all its observations).
    pub growth_bytes_per_sec: f64,
    /// The share of steps between observations where it did not shrink, 0 to 1.
    pub monotone: f64,
    /// The time its observations span.
    pub span: Duration,
    /// Its share of the growth of all followed sites over the same span, 0 to 1.
    pub share_of_growth: f64,
    /// In use at the last observation.
    pub inuse_bytes: f64,
    /// The evidence: (seconds since the first observation, in-use bytes).
    pub series: Vec<(f64, f64)>,
}

impl Suspect {
    /// The function that allocated: the stack's leaf.
    #[must_use]
    pub fn function(&self) -> &str {
        self.stack.first().map_or("", String::as_str)
    }
}

/// The leak suspects, strongest growth first; `Display` gives a table.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LeakSuspects {
    /// The suspects.
    pub suspects: Vec<Suspect>,
    /// Observations taken so far.
    pub observations: u64,
    /// Sites followed.
    pub sites: usize,
}

/// Ranks the call sites [`observe_leaks`] follows by how steadily their in-use bytes grow:
/// a suspect's series rises over its whole span, in both of its halves and out of its
/// noise (the watchdog's robust Theil–Sen fit), so a site that grew and was freed, or a
/// cache that filled to its bound and stays there, is not one. Strongest growth first.
/// Needs at least four observations of a site.
#[must_use]
pub fn leak_suspects() -> LeakSuspects {
    let guard = OBSERVATIONS.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(observations) = guard.as_ref() else {
        return LeakSuspects::default();
    };
    let mut fitter = Fitter::default();
    let mut suspects = Vec::new();
    let mut total_growth = 0.0;
    for site in observations.sites.values() {
        let (Some(first), Some(last)) = (site.series.first(), site.series.last()) else {
            continue;
        };
        let growth = last.value - first.value;
        if growth > 0.0 {
            total_growth += growth;
        }
        let span = last.t - first.t;
        if site.series.len() < 4 || span <= 0.0 {
            continue;
        }
        let window = Duration::from_secs_f64(span);
        let trend = fitter.trend(&site.series, window);
        let Some(slope) = trend.slope.filter(|_| trend.rising && growth > 0.0) else {
            continue;
        };
        let points: Vec<Point> = site.series.points().collect();
        let steps = points.len() - 1;
        let up = points
            .windows(2)
            .filter(|w| w[1].value >= w[0].value)
            .count();
        suspects.push(Suspect {
            stack: site.stack.clone(),
            growth_bytes_per_sec: slope,
            monotone: up as f64 / steps as f64,
            span: window,
            share_of_growth: growth,
            inuse_bytes: last.value,
            series: points.iter().map(|p| (p.t - first.t, p.value)).collect(),
        });
    }
    for suspect in &mut suspects {
        suspect.share_of_growth = if total_growth > 0.0 {
            suspect.share_of_growth / total_growth
        } else {
            0.0
        };
    }
    suspects.sort_by(|a, b| b.growth_bytes_per_sec.total_cmp(&a.growth_bytes_per_sec));
    LeakSuspects {
        suspects,
        observations: observations.observations,
        sites: observations.sites.len(),
    }
}

impl fmt::Display for LeakSuspects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "leak suspects: {} of {} sites, over {} observations",
            self.suspects.len(),
            self.sites,
            self.observations
        )?;
        writeln!(
            f,
            "{:>12}  {:>10}  {:>8}  {:>7}  {:>8}  function",
            "growth/s", "in use", "monotone", "share", "span"
        )?;
        for s in &self.suspects {
            writeln!(
                f,
                "{:>12}  {:>10}  {:>7.0}%  {:>6.0}%  {:>7.0}s  {}",
                format!("+{}", Bytes(s.growth_bytes_per_sec.max(0.0) as u64)),
                Bytes(s.inuse_bytes.max(0.0) as u64).to_string(),
                s.monotone * 100.0,
                s.share_of_growth * 100.0,
                s.span.as_secs_f64(),
                s.function()
            )?;
        }
        Ok(())
    }
}

/// Observes every `interval` on a thread named `memsentry-leaks` until the returned
/// handle is dropped (the first observation at once).
///
/// # Errors
///
/// If the thread cannot be spawned.
pub fn track_leaks(interval: Duration) -> std::io::Result<LeakTracker> {
    Ok(LeakTracker {
        _thread: Periodic::start("memsentry-leaks", interval, First::AtOnce, observe_leaks)?,
        started: SystemTime::now(),
    })
}

/// A running [`track_leaks`]: stops it when dropped.
#[derive(Debug)]
#[must_use = "dropping the tracker stops it"]
pub struct LeakTracker {
    _thread: Periodic,
    started: SystemTime,
}

impl LeakTracker {
    /// When it started.
    #[must_use]
    pub fn started(&self) -> SystemTime {
        self.started
    }
}

/// The suspects as JSON (the endpoint's `/debug/memsentry/leaks`).
pub(crate) fn to_json(suspects: &LeakSuspects) -> String {
    json::to_string(&LeaksJson {
        observations: suspects.observations,
        sites: suspects.sites,
        suspects: suspects
            .suspects
            .iter()
            .map(|s| SuspectJson {
                function: s.function(),
                stack: &s.stack,
                growth_bytes_per_second: json::round(s.growth_bytes_per_sec, 1),
                monotone: json::round(s.monotone, 3),
                span_seconds: json::seconds(s.span),
                share_of_growth: json::round(s.share_of_growth, 3),
                inuse_bytes: json::round(s.inuse_bytes, 0),
                series: s
                    .series
                    .iter()
                    .map(|&(t, bytes)| (json::round(t, 3), json::round(bytes, 0)))
                    .collect(),
            })
            .collect(),
    })
}

/// [`to_json`]'s document.
#[derive(Serialize)]
struct LeaksJson<'a> {
    observations: u64,
    sites: usize,
    suspects: Vec<SuspectJson<'a>>,
}

/// One [`Suspect`]; its series as `[seconds, in-use bytes]` pairs.
#[derive(Serialize)]
struct SuspectJson<'a> {
    function: &'a str,
    stack: &'a [String],
    growth_bytes_per_second: f64,
    monotone: f64,
    span_seconds: f64,
    share_of_growth: f64,
    inuse_bytes: f64,
    series: Vec<(f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_every_field_once_in_a_fixed_order() {
        let suspects = LeakSuspects {
            suspects: vec![Suspect {
                stack: vec!["leaky::grow".to_owned(), "main".to_owned()],
                growth_bytes_per_sec: 1024.04,
                monotone: 2.0 / 3.0,
                span: Duration::from_millis(3000),
                share_of_growth: 1.0,
                inuse_bytes: 4096.4,
                series: vec![(0.0, 1024.0), (1.0004, 2048.0), (3.0, 4096.4)],
            }],
            observations: 4,
            sites: 2,
        };
        assert_eq!(
            to_json(&suspects),
            concat!(
                r#"{"observations":4,"sites":2,"suspects":[{"function":"leaky::grow","#,
                r#""stack":["leaky::grow","main"],"growth_bytes_per_second":1024.0,"#,
                r#""monotone":0.667,"span_seconds":3.0,"share_of_growth":1.0,"#,
                r#""inuse_bytes":4096.0,"series":[[0.0,1024.0],[1.0,2048.0],[3.0,4096.0]]}]}"#,
            )
        );
    }
}
