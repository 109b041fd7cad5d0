//! **[C]** The running [watchdog](crate::watch)'s status, and the dump files it wrote:
//! listed, and each served by name (only names of the dump files' shape).

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use super::request::Request;
use super::response::{JSON, Response, TEXT};
use crate::profile;

/// Where one dump file is served: `/debug/memsentry/dumps/NAME`.
pub(super) const DUMPS_PREFIX: &str = "/debug/memsentry/dumps/";

const NO_WATCHDOG: &str = "no watchdog is running: start one with memsentry::watch::Watchdog";

/// `/debug/memsentry/watchdog`: the status as JSON; `?debug=1`: text.
pub(super) fn status(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    match crate::watch::status() {
        Some(status) if text => Ok(Response::ok(TEXT, status.to_string())),
        Some(status) => Ok(Response::ok(JSON, status.to_json())),
        None => Err(Response::error(404, NO_WATCHDOG)),
    }
}

/// The running watchdog's dump directory, or the 404 that says why there is none.
fn dump_dir() -> Result<PathBuf, Response> {
    if crate::watch::status().is_none() {
        return Err(Response::error(404, NO_WATCHDOG));
    }
    crate::watch::dump_dir()
        .ok_or_else(|| Response::error(404, "the watchdog writes no dumps (no directory set)"))
}

/// `/debug/memsentry/dumps`: the dump files, newest first, as JSON; `?debug=1`: text.
pub(super) fn dumps(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    let dir = dump_dir()?;
    let files = profile::dump::store::list(&dir).map_err(|error| {
        Response::error(500, &format!("cannot list {}: {error}", dir.display()))
    })?;
    if text {
        let mut out = format!("{} dump files in {}\n", files.len(), dir.display());
        for file in files.iter().rev() {
            let _ = writeln!(out, "{:>12}  {}{}", file.bytes, DUMPS_PREFIX, file.name);
        }
        return Ok(Response::ok(TEXT, out));
    }
    Ok(Response::json(&DumpsJson {
        dir: dir.display().to_string(),
        files: files
            .iter()
            .rev()
            .map(|file| DumpJson {
                name: &file.name,
                bytes: file.bytes,
                path: format!("{DUMPS_PREFIX}{}", file.name),
            })
            .collect(),
    }))
}

/// The dump directory's document.
#[derive(Serialize)]
struct DumpsJson<'a> {
    dir: String,
    /// Newest first.
    files: Vec<DumpJson<'a>>,
}

/// One dump file: its name, size, and the path that serves it.
#[derive(Serialize)]
struct DumpJson<'a> {
    name: &'a str,
    bytes: u64,
    path: String,
}

/// `/debug/memsentry/dumps/NAME`: one file of the dump directory, by name.
pub(super) fn dump_file(request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    let name = request.path.strip_prefix(DUMPS_PREFIX).unwrap_or_default();
    let dir = dump_dir()?;
    let Some((_, suffix)) = profile::dump::store::split_name(name) else {
        return Err(Response::error(404, &format!("no such dump file: {name}")));
    };
    match std::fs::read(dir.join(name)) {
        Ok(body) => {
            let content_type = match suffix {
                ".svg" => "image/svg+xml",
                ".memory.stat" | ".memory.events" => TEXT,
                _ => "application/octet-stream",
            };
            Ok(Response::ok(content_type, body).header(
                "Content-Disposition",
                format!("attachment; filename=\"{name}\""),
            ))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(Response::error(404, &format!("no such dump file: {name}")))
        }
        Err(error) => Err(Response::error(
            500,
            &format!("cannot read {name}: {error}"),
        )),
    }
}
