//! **[C]** Memory pressure stall information (PSI): a kernel trigger the watchdog waits on
//! with `poll()`, or the `some avg10` figure read every tick where triggers cannot be set.
//!
//! Where systemd asks for it (`$MEMORY_PRESSURE_WATCH`, with the trigger to write in
//! `$MEMORY_PRESSURE_WRITE`, base64), that path and trigger are used: a PSI file is waited
//! on for `POLLPRI`, a FIFO for `POLLIN`; `/dev/null` there means "pressure handling is
//! off". Otherwise the cgroup's `memory.pressure` (v2), or the system's
//! `/proc/pressure/memory`, gets the trigger (by default `some 150000 1000000`: tasks
//! stalled on memory for 150 ms within 1 s). Setting a trigger needs a kernel with PSI and,
//! before Linux 6.5 or without `CAP_SYS_RESOURCE`, a window that is a multiple of 2 s; if
//! the write is refused the watchdog reads `some avg10` every tick instead and counts a
//! pressure event when it is at least the trigger's share (15% for the default).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The trigger written unless told otherwise: 150 ms of stall within a 1 s window.
pub const DEFAULT_TRIGGER: &str = "some 150000 1000000";

/// How pressure is watched.
#[derive(Debug)]
pub(crate) enum Psi {
    /// A trigger is armed on `file`: the kernel wakes `poll()` (`POLLPRI`, or `POLLIN`
    /// for a FIFO systemd made).
    Trigger {
        file: File,
        fifo: bool,
        path: PathBuf,
    },
    /// No trigger could be armed: read `some avg10` from `file` each tick.
    Average {
        file: File,
        threshold: f64,
        path: PathBuf,
    },
    /// Pressure is not watched (turned off, or no PSI file).
    Off { why: String },
}

impl Psi {
    /// Arms a trigger on `$MEMORY_PRESSURE_WATCH` or `default_file`, falling back to
    /// averages.
    pub(crate) fn arm(default_file: &Path, trigger: &str) -> Psi {
        if let Some(watch) = std::env::var_os("MEMORY_PRESSURE_WATCH") {
            let path = PathBuf::from(watch);
            if path == Path::new("/dev/null") {
                return Psi::Off {
                    why: "MEMORY_PRESSURE_WATCH=/dev/null".to_owned(),
                };
            }
            let write = std::env::var("MEMORY_PRESSURE_WRITE")
                .ok()
                .and_then(|text| base64_decode(text.trim()));
            match std::fs::metadata(&path) {
                Ok(meta) if meta.file_type().is_fifo() => {
                    // Read and write: with a writer always there (this one), the
                    // FIFO never reports a hang-up when systemd's writer closes it
                    // (Linux defines O_RDWR on a FIFO; see fifo(7)).
                    if let Ok(file) = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&path)
                    {
                        return Psi::Trigger {
                            file,
                            fifo: true,
                            path,
                        };
                    }
                }
                Ok(meta) if meta.file_type().is_file() => {
                    let bytes = write.unwrap_or_else(|| nul_terminated(trigger));
                    return Psi::arm_file(&path, &bytes, trigger);
                }
                // A socket (systemd may hand one) is not supported: fall through.
                _ => {}
            }
        }
        Psi::arm_file(default_file, &nul_terminated(trigger), trigger)
    }

    fn arm_file(path: &Path, bytes: &[u8], trigger: &str) -> Psi {
        let armed = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .and_then(|mut file| file.write_all(bytes).map(|()| file));
        if let Ok(file) = armed {
            return Psi::Trigger {
                file,
                fifo: false,
                path: path.to_path_buf(),
            };
        }
        match File::open(path) {
            Ok(file) => Psi::Average {
                file,
                threshold: average_threshold(trigger),
                path: path.to_path_buf(),
            },
            Err(error) => Psi::Off {
                why: format!("{}: {error}", path.display()),
            },
        }
    }

    /// The descriptor to wait on and the events to wait for, when a trigger is armed.
    pub(crate) fn pollfd(&self) -> Option<libc::pollfd> {
        match self {
            Psi::Trigger { file, fifo, .. } => Some(libc::pollfd {
                fd: file.as_raw_fd(),
                events: if *fifo { libc::POLLIN } else { libc::POLLPRI },
                revents: 0,
            }),
            _ => None,
        }
    }

    /// Handles what `poll()` returned for [`pollfd`](Self::pollfd): whether pressure was
    /// signalled. An error or hang-up (the cgroup was removed) turns pressure watching
    /// off, so the watchdog never spins on a descriptor that stays ready.
    pub(crate) fn on_poll(&mut self, revents: libc::c_short) -> bool {
        if revents & (libc::POLLERR | libc::POLLNVAL | libc::POLLHUP) != 0 {
            *self = Psi::Off {
                why: "the pressure file reported an error".to_owned(),
            };
            return false;
        }
        if let Psi::Trigger {
            file, fifo: true, ..
        } = self
        {
            // Drain what the writer sent; its content does not matter.
            let mut buffer = [0u8; 256];
            while matches!(file.read(&mut buffer), Ok(n) if n > 0) {}
        }
        revents & (libc::POLLPRI | libc::POLLIN) != 0
    }

    /// Reads the average where no trigger is armed: whether it is at the threshold.
    pub(crate) fn poll_average(&self) -> bool {
        let Psi::Average {
            file, threshold, ..
        } = self
        else {
            return false;
        };
        let mut buffer = [0u8; 512];
        crate::stats::read_whole(file, &mut buffer)
            .and_then(some_avg10)
            .is_some_and(|avg10| avg10 >= *threshold)
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Psi::Trigger { path, fifo, .. } => format!(
                "{} trigger on {}",
                if *fifo { "FIFO" } else { "PSI" },
                path.display()
            ),
            Psi::Average {
                path, threshold, ..
            } => format!("some avg10 >= {threshold}% read from {}", path.display()),
            Psi::Off { why } => format!("off ({why})"),
        }
    }
}

fn nul_terminated(trigger: &str) -> Vec<u8> {
    let mut bytes = trigger.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// The share of time (percent) a trigger `some|full STALL_US WINDOW_US` stands for; 15
/// when it does not parse.
fn average_threshold(trigger: &str) -> f64 {
    let mut words = trigger.split_ascii_whitespace().skip(1);
    let stall = words.next().and_then(|w| w.parse::<f64>().ok());
    let window = words.next().and_then(|w| w.parse::<f64>().ok());
    match (stall, window) {
        (Some(stall), Some(window)) if window > 0.0 => stall / window * 100.0,
        _ => 15.0,
    }
}

/// `some avg10=X` from a PSI file.
fn some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let value = line
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?;
    value.parse().ok()
}

/// Standard base64 (RFC 4648, padding optional); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut count = 0;
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_writes_base64() {
        // What systemd puts in MEMORY_PRESSURE_WRITE for its default trigger.
        let encoded = "c29tZSAyMDAwMDAgMjAwMDAwMAA=";
        assert_eq!(
            base64_decode(encoded).unwrap(),
            b"some 200000 2000000\0".to_vec()
        );
        assert_eq!(base64_decode("").unwrap(), Vec::<u8>::new());
        assert_eq!(base64_decode("a*b"), None);
    }

    #[test]
    fn averages() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.50 total=123\n\
                    full avg10=1.00 avg60=0.00 avg300=0.00 total=4\n";
        assert_eq!(some_avg10(text), Some(12.5));
        assert_eq!(some_avg10("full avg10=1.00\n"), None);
        assert_eq!(average_threshold(DEFAULT_TRIGGER), 15.0);
        assert_eq!(average_threshold("full 100000 2000000"), 5.0);
        assert_eq!(average_threshold("nonsense"), 15.0);
    }
}
