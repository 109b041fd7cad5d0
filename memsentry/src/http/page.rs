//! **[C]** The page for a browser at `/debug/memsentry/` (`page.html`: live charts, the top
//! in-use sites, tasks, leak suspects, the watchdog), and `/`, which redirects to it.

use super::request::Request;
use super::response::Response;

/// The page: one file, its script and style inline, reading the JSON paths.
const PAGE: &str = include_str!("page.html");

/// `/debug/memsentry/`. Its policy lets the page run its own inline script and style and
/// show the flame graph it fetches in a frame (a `blob:` URL), and nothing from elsewhere.
pub(super) fn page(request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    Ok(Response::ok("text/html; charset=utf-8", PAGE).header(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
         img-src 'self' blob: data:; frame-src blob:",
    ))
}

/// `/`: where the page is.
pub(super) fn redirect() -> Response {
    Response::error(302, "the page is at /debug/memsentry/").header("Location", "/debug/memsentry/")
}
