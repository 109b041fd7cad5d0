//! **[C]** Growth over a sliding window, robustly: Theil–Sen slopes on a bounded series,
//! and the time a growing series takes to reach a limit.
//!
//! A window's slope is the median of the slopes between pairs of its points (Theil–Sen),
//! on at most [`MAX_POINTS`] points spread evenly over the window, so one tick's cost is
//! bounded whatever the window. A window counts as *rising* only when all of these hold:
//!
//! - it is at least half covered by points (and has at least [`MIN_POINTS`]);
//! - its slope is positive, and so are the slopes of its first and of its second half
//!   (growth over the whole window, not a step somewhere in it: a single burst followed
//!   by a flat line leaves one half flat);
//! - the rise it predicts over the window is at least twice the median distance of the
//!   points from the fitted line (growth that stands out of the noise: a sawtooth or
//!   plain noise does not).
//!
//! Only a rising window yields a forecast. A flat or falling series has none, rather
//! than a huge number.

use std::collections::VecDeque;
use std::time::Duration;

/// Points a window's fit looks at, at most: 48 points make 1,128 pairs.
pub(crate) const MAX_POINTS: usize = 48;
/// Points a window needs before it says anything.
pub(crate) const MIN_POINTS: usize = 4;

/// One observation: seconds since the watchdog started, and the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub(crate) t: f64,
    pub(crate) value: f64,
}

/// The newest points of one series, at most `capacity` of them (allocated once).
#[derive(Debug)]
pub(crate) struct Series {
    points: VecDeque<Point>,
    capacity: usize,
}

impl Series {
    pub(crate) fn with_capacity(capacity: usize) -> Series {
        let capacity = capacity.max(MIN_POINTS);
        Series {
            points: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, point: Point) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    pub(crate) fn last(&self) -> Option<Point> {
        self.points.back().copied()
    }

    pub(crate) fn first(&self) -> Option<Point> {
        self.points.front().copied()
    }

    pub(crate) fn points(&self) -> impl Iterator<Item = Point> + '_ {
        self.points.iter().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

/// What one window says of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Trend {
    /// Theil–Sen slope over the window, in units per second (`None`: too few points).
    pub(crate) slope: Option<f64>,
    /// Whether the series grows over the whole window (see the module docs).
    pub(crate) rising: bool,
    /// The time the window's points span, in seconds.
    pub(crate) span: f64,
}

/// Scratch space for fits, allocated once and reused every tick.
#[derive(Debug)]
pub(crate) struct Fitter {
    chosen: Vec<Point>,
    values: Vec<f64>,
}

impl Default for Fitter {
    fn default() -> Self {
        Fitter {
            chosen: Vec::with_capacity(MAX_POINTS),
            values: Vec::with_capacity(MAX_POINTS * (MAX_POINTS - 1) / 2),
        }
    }
}

impl Fitter {
    /// The trend of `series` over the last `window`.
    pub(crate) fn trend(&mut self, series: &Series, window: Duration) -> Trend {
        let Some(newest) = series.last() else {
            return Trend::default();
        };
        let window = window.as_secs_f64();
        let from = newest.t - window;
        // The window's points: a contiguous run at the end of the series.
        let start = series.points.partition_point(|p| p.t < from);
        let count = series.points.len() - start;
        self.chosen.clear();
        if count <= MAX_POINTS {
            self.chosen.extend(series.points.range(start..));
        } else {
            // Evenly spread, first and last included.
            for k in 0..MAX_POINTS {
                let index = start + k * (count - 1) / (MAX_POINTS - 1);
                self.chosen.push(series.points[index]);
            }
        }
        let n = self.chosen.len();
        let span = match (self.chosen.first(), self.chosen.last()) {
            (Some(first), Some(last)) => last.t - first.t,
            _ => 0.0,
        };
        if n < MIN_POINTS || span <= 0.0 {
            return Trend {
                slope: None,
                rising: false,
                span,
            };
        }
        let slope = median_slope(&self.chosen, &mut self.values);
        let half = n / 2;
        let first_half = median_slope(&self.chosen[..=half], &mut self.values);
        let second_half = median_slope(&self.chosen[half..], &mut self.values);
        let covered = span >= window / 2.0;
        let rising = covered
            && slope > 0.0
            && first_half > 0.0
            && second_half > 0.0
            && slope * span >= 2.0 * self.residual_spread(slope);
        Trend {
            slope: Some(slope),
            rising,
            span,
        }
    }

    /// The median distance of the chosen points from the line of `slope` through their
    /// median intercept.
    fn residual_spread(&mut self, slope: f64) -> f64 {
        self.values.clear();
        self.values
            .extend(self.chosen.iter().map(|p| p.value - slope * p.t));
        let intercept = median(&mut self.values);
        self.values.clear();
        self.values.extend(
            self.chosen
                .iter()
                .map(|p| (p.value - slope * p.t - intercept).abs()),
        );
        median(&mut self.values)
    }
}

/// The median of the slopes between every pair of `points` (0 for fewer than two).
fn median_slope(points: &[Point], scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.t - a.t;
            if dt > 0.0 {
                scratch.push((b.value - a.value) / dt);
            }
        }
    }
    median(scratch)
}

/// The median of `values` (reordered); 0 when empty.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let len = values.len();
    let middle = len / 2;
    let (below, &mut upper, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    if len % 2 == 1 {
        upper
    } else {
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// How long until `usage` reaches `limit` at `slope` per second; `None` unless the slope
/// is positive. A usage at or past the limit gives zero.
pub(crate) fn time_to_limit(usage: f64, limit: f64, slope: f64) -> Option<Duration> {
    if slope.is_nan() || slope <= 0.0 || slope.is_infinite() {
        return None;
    }
    let seconds = ((limit - usage) / slope).max(0.0);
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn series(values: impl Fn(f64) -> f64) -> Series {
        let mut series = Series::with_capacity(200);
        for tick in 0..=120 {
            let t = f64::from(tick);
            series.push(Point {
                t,
                value: values(t),
            });
        }
        series
    }

    fn trend(values: impl Fn(f64) -> f64) -> Trend {
        Fitter::default().trend(&series(values), WINDOW)
    }

    /// A fixed pseudo-random sequence in [-1, 1] (a linear congruential generator), so
    /// the noisy cases are the same every run.
    fn noise(t: f64) -> f64 {
        let mut x = (t as u64).wrapping_mul(6_364_136_223_846_793_005) ^ 0x9E37_79B9;
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    #[test]
    fn linear_growth_forecasts_the_true_time() {
        // 1 MiB/s from 100 MiB; limit 1 GiB: at t = 120 the truth is (1024 - 220) s.
        let mib = f64::from(1 << 20);
        let t = trend(|t| 100.0 * mib + t * mib);
        assert!(t.rising, "{t:?}");
        let slope = t.slope.unwrap();
        assert!((slope - mib).abs() < 1e-6 * mib, "{slope}");
        let forecast = time_to_limit(220.0 * mib, 1024.0 * mib, slope).unwrap();
        let truth = 804.0;
        assert!(
            (forecast.as_secs_f64() - truth).abs() < 0.01 * truth,
            "{forecast:?}"
        );
    }

    #[test]
    fn noisy_growth_is_still_found_within_a_few_percent() {
        let t = trend(|t| 1000.0 * t + 5000.0 * noise(t));
        assert!(t.rising, "{t:?}");
        let slope = t.slope.unwrap();
        assert!((slope - 1000.0).abs() < 0.1 * 1000.0, "{slope}");
    }

    #[test]
    fn a_burst_then_flat_raises_no_forecast() {
        // +50 MiB at t = 90, in the middle of the last minute, flat otherwise.
        let t = trend(|t| if t < 90.0 { 1e8 } else { 1.5e8 });
        assert!(!t.rising, "{t:?}");
        // And just after the burst, when it sits at the window's end.
        let mut series = series(|t| if t < 118.0 { 1e8 } else { 1.5e8 });
        assert!(!Fitter::default().trend(&series, WINDOW).rising);
        // Nor does a single spike that is gone again.
        series.push(Point {
            t: 121.0,
            value: 1e8,
        });
        assert!(!Fitter::default().trend(&series, WINDOW).rising);
    }

    #[test]
    fn a_sawtooth_raises_no_forecast() {
        // Fills up for 10 s, drops back (a batch job, a cache flushed), over and over.
        let t = trend(|t| 1e8 + 1e6 * (t % 10.0));
        assert!(!t.rising, "{t:?}");
    }

    #[test]
    fn noise_alone_raises_no_forecast() {
        let t = trend(|t| 1e8 + 1e6 * noise(t));
        assert!(!t.rising, "{t:?}");
    }

    #[test]
    fn a_falling_series_has_no_forecast() {
        let t = trend(|t| 1e9 - 1e6 * t);
        assert!(!t.rising);
        assert!(t.slope.unwrap() < 0.0);
        assert_eq!(time_to_limit(5e8, 1e9, t.slope.unwrap()), None);
        assert_eq!(time_to_limit(5e8, 1e9, 0.0), None);
        assert_eq!(time_to_limit(5e8, 1e9, f64::NAN), None);
    }

    #[test]
    fn a_window_needs_half_its_length_of_points() {
        let mut series = Series::with_capacity(100);
        for tick in 0..20 {
            let t = f64::from(tick);
            series.push(Point { t, value: t });
        }
        let mut fitter = Fitter::default();
        assert!(
            !fitter.trend(&series, WINDOW).rising,
            "19 s of a 60 s window"
        );
        assert!(fitter.trend(&series, Duration::from_secs(30)).rising);
        assert_eq!(
            fitter.trend(&Series::with_capacity(4), WINDOW),
            Trend::default()
        );
    }

    #[test]
    fn long_windows_are_thinned_to_a_bounded_fit() {
        let mut series = Series::with_capacity(5000);
        for tick in 0..5000 {
            let t = f64::from(tick);
            series.push(Point { t, value: 3.0 * t });
        }
        let mut fitter = Fitter::default();
        let trend = fitter.trend(&series, Duration::from_secs(4000));
        assert!(trend.rising);
        assert!((trend.slope.unwrap() - 3.0).abs() < 1e-9);
        assert!(fitter.values.capacity() <= MAX_POINTS * MAX_POINTS);
        // The ring keeps its capacity.
        assert_eq!(series.points.len(), 5000);
        series.push(Point {
            t: 5000.0,
            value: 0.0,
        });
        assert_eq!(series.points.len(), 5000);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
