//! **[C]** The heap profile paths (`/debug/pprof/heap`, `/debug/pprof/allocs`) in each of
//! their formats, the sampling rate that feeds them, and the tables drawn from the
//! samples: lifetimes per call site and leak suspects.

use super::request::{Request, debug_flag, unknown_parameter};
use super::response::{JSON, Response, TEXT};
use super::settings::Settings;
use super::{MIN_SAMPLE_RATE, fleet};
use crate::profile::{self, SampleType, Symbolization};

/// The output of a profile path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Pprof,
    Top,
    Folded,
    Svg,
}

/// `/debug/pprof/heap` and `/debug/pprof/allocs`: the profile, by default as pprof showing
/// `default_type` first.
pub(super) fn profile(request: &Request, default_type: SampleType) -> Result<Response, Response> {
    let mut format = Format::Pprof;
    let mut sample_type = None;
    let mut symbolization = Symbolization::InProcess;
    let mut window = None;
    let mut peak = false;
    for (key, value) in &request.query {
        match key.as_str() {
            "peak" => peak = debug_flag(value)?,
            "debug" => {
                if debug_flag(value)? {
                    format = Format::Top;
                }
            }
            "seconds" => window = Some(fleet::seconds(value)?),
            "gc" => fleet::gc(value)?,
            "format" => {
                format = match value.as_str() {
                    "pprof" => Format::Pprof,
                    "top" => Format::Top,
                    "folded" => Format::Folded,
                    "svg" => Format::Svg,
                    _ => {
                        return Err(Response::error(
                            400,
                            &format!("format={value:?}: expected pprof, top, folded or svg"),
                        ));
                    }
                }
            }
            "sample_index" => match value.parse::<SampleType>() {
                Ok(t) if !t.is_change() => sample_type = Some(t),
                _ => {
                    return Err(Response::error(
                        400,
                        &format!(
                            "sample_index={value:?}: expected inuse_space, inuse_objects, \
                             alloc_space or alloc_objects"
                        ),
                    ));
                }
            },
            "symbolization" => {
                symbolization = match value.as_str() {
                    "in-process" => Symbolization::InProcess,
                    "offline" => Symbolization::Offline,
                    _ => {
                        return Err(Response::error(
                            400,
                            &format!("symbolization={value:?}: expected in-process or offline"),
                        ));
                    }
                }
            }
            _ => return Err(unknown_parameter(key)),
        }
    }
    let sample_type = sample_type.unwrap_or(default_type);
    let heap = match window {
        _ if peak => profile::peak(),
        Some(window) => fleet::delta(window, symbolization)?,
        None => profile::heap_with(symbolization),
    };
    Ok(match format {
        Format::Pprof => fleet::pprof_body(&heap, sample_type),
        Format::Top => Response::ok(TEXT, heap.top(sample_type, 50).to_string()),
        Format::Folded => Response::ok(TEXT, heap.folded(sample_type)),
        Format::Svg => svg(&heap, sample_type),
    })
}

#[cfg(feature = "flamegraph")]
fn svg(heap: &profile::Profile, sample_type: SampleType) -> Response {
    let mut body = Vec::new();
    match heap.flamegraph(sample_type, &mut body) {
        Ok(()) => Response::ok("image/svg+xml", body),
        Err(error) => Response::error(500, &format!("cannot render the flame graph: {error}")),
    }
}

#[cfg(not(feature = "flamegraph"))]
fn svg(_heap: &profile::Profile, _sample_type: SampleType) -> Response {
    Response::error(
        404,
        "format=svg needs memsentry's `flamegraph` feature, which this build left out",
    )
}

/// `/debug/memsentry/sample_rate`: reads the rate; POST sets it (from `?rate=` or the
/// body), with a token or [`Server::allow_changes`](super::Server::allow_changes), and
/// under [`MIN_SAMPLE_RATE`] only with the latter.
pub(super) fn sample_rate(settings: &Settings, request: &Request) -> Result<Response, Response> {
    if request.method == "POST" && settings.token.is_none() && !settings.allow_changes {
        return Err(Response::error(
            403,
            "changing the sampling rate needs a token (Server::token) or \
             Server::allow_changes(true)",
        ));
    }
    let mut value = None;
    for (key, v) in &request.query {
        match key.as_str() {
            "rate" if request.method == "POST" => value = Some(v.clone()),
            _ => return Err(unknown_parameter(key)),
        }
    }
    if request.method == "GET" {
        return Ok(Response::ok(TEXT, format!("{}\n", profile::sample_rate())));
    }
    let value = match value {
        Some(value) => value,
        None => match std::str::from_utf8(&request.body) {
            Ok(body) => body.trim().to_owned(),
            Err(_) => return Err(Response::error(400, "the body is not UTF-8")),
        },
    };
    match crate::config::parse_bytes(value.as_bytes()) {
        Some(rate) if (1..MIN_SAMPLE_RATE).contains(&rate) && !settings.allow_changes => {
            Err(Response::error(
                403,
                &format!(
                    "a sampling rate of {rate} bytes (under {MIN_SAMPLE_RATE}) slows the \
                     service: it needs Server::allow_changes(true)"
                ),
            ))
        }
        Some(rate) => {
            profile::set_sample_rate(rate);
            Ok(Response::ok(TEXT, format!("{rate}\n")))
        }
        None => Err(Response::error(
            400,
            &format!(
                "{:?} is not a byte count (expected e.g. 524288, 512KiB, 1MiB, 0)",
                value.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// `/debug/memsentry/lifetimes`: how long sampled blocks live, per call site.
pub(super) fn lifetimes(request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    Ok(Response::ok(TEXT, profile::lifetimes().to_string()))
}

/// `/debug/memsentry/leaks`: the leak suspects as JSON; `?debug=1`: the table.
pub(super) fn leaks(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    let suspects = profile::leak_suspects();
    Ok(if text {
        Response::ok(TEXT, suspects.to_string())
    } else {
        Response::ok(JSON, profile::leaks_json(&suspects))
    })
}
