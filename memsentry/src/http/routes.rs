//! **[C]** The route table: each path with the methods it takes, whether it is served
//! without the token, and its handler; and the checks every request passes before its
//! handler runs (the path, the method, the token).

use super::request::Request;
use super::response::{Response, TEXT};
use super::settings::Settings;
use super::{fleet, page, profiles, stats, watchdog};
use crate::profile::SampleType;

/// What a handler returns: its answer, or (`Err`) the answer that refused the request,
/// so that `?` ends a handler on the first bad parameter.
type Answer = Result<Response, Response>;

/// What answers a path.
enum Handler {
    /// A handler of the request alone.
    Request(fn(&Request) -> Answer),
    /// A handler that reads the server's settings too.
    Settings(fn(&Settings, &Request) -> Answer),
}

/// One path served.
struct Route {
    path: &'static str,
    methods: &'static [&'static str],
    /// Served without the token.
    open: bool,
    handler: Handler,
}

/// Every GET also answers HEAD.
const GET: &[&str] = &["GET", "HEAD"];

impl Route {
    /// A GET route that needs the token (when one is set).
    const fn get(path: &'static str, handler: fn(&Request) -> Answer) -> Route {
        Route {
            path,
            methods: GET,
            open: false,
            handler: Handler::Request(handler),
        }
    }

    /// A GET route served without the token.
    const fn open(path: &'static str, handler: fn(&Request) -> Answer) -> Route {
        Route {
            open: true,
            ..Route::get(path, handler)
        }
    }
}

/// Every path served but the dump files ([`DUMP_FILE`]).
static TABLE: [Route; 16] = [
    Route::open("/healthz", |request| {
        request.no_query()?;
        Ok(Response::ok(TEXT, "ok\n"))
    }),
    Route {
        path: "/metrics",
        methods: GET,
        open: false,
        handler: Handler::Settings(stats::metrics),
    },
    Route::get("/debug/pprof/", |request| {
        request.no_query()?;
        Ok(fleet::index())
    }),
    Route::get("/debug/pprof/heap", |request| {
        profiles::profile(request, SampleType::InuseSpace)
    }),
    Route::get("/debug/pprof/allocs", |request| {
        profiles::profile(request, SampleType::AllocSpace)
    }),
    Route::get("/debug/pprof/delta_heap", |request| {
        Ok(fleet::delta_heap(request))
    }),
    Route::get("/debug/pprof/goroutine", fleet::goroutine),
    Route {
        path: "/debug/memsentry/sample_rate",
        methods: &["GET", "HEAD", "POST"],
        open: false,
        handler: Handler::Settings(profiles::sample_rate),
    },
    Route::get("/debug/memsentry/snapshot", stats::snapshot),
    Route::get("/debug/memsentry/tasks", stats::tasks),
    Route::get("/debug/memsentry/lifetimes", profiles::lifetimes),
    Route::get("/debug/memsentry/leaks", profiles::leaks),
    Route::get("/debug/memsentry/watchdog", watchdog::status),
    Route::get("/debug/memsentry/dumps", watchdog::dumps),
    // The page itself holds no data (its requests for data need the token), and a
    // browser cannot send a bearer token when it navigates: it is served without one.
    Route::open("/debug/memsentry/", page::page),
    Route::open("/", |_| Ok(page::redirect())),
];

/// `/debug/memsentry/dumps/NAME`: one of the watchdog's dump files.
static DUMP_FILE: Route = Route::get(watchdog::DUMPS_PREFIX, watchdog::dump_file);

/// The answer to `request`: 404 for a path not served, 405 for a method its path does not
/// take, 401 without the token where one is needed; otherwise its handler's.
pub(super) fn answer(settings: &Settings, request: &Request) -> Response {
    let path = request.path.as_str();
    let route = match TABLE.iter().find(|route| route.path == path) {
        Some(route) => route,
        None if path.starts_with(watchdog::DUMPS_PREFIX) => &DUMP_FILE,
        None if fleet::NOT_IN_RUST.contains(&path) => return fleet::not_in_rust(path),
        None => return Response::error(404, &format!("no such path: {path}")),
    };
    if !route.methods.contains(&request.method.as_str()) {
        return Response::error(405, &format!("{} does not take {}", path, request.method))
            .header("Allow", route.methods.join(", "));
    }
    if !route.open && !settings.authorized(request) {
        return Response::error(401, "missing or wrong bearer token")
            .header("WWW-Authenticate", "Bearer");
    }
    let answer = match route.handler {
        Handler::Request(handler) => handler(request),
        Handler::Settings(handler) => handler(settings, request),
    };
    answer.unwrap_or_else(|refused| refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_routed_once() {
        for (i, route) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|other| other.path != route.path),
                "{} twice",
                route.path
            );
            assert!(
                !route.path.starts_with(watchdog::DUMPS_PREFIX),
                "{}",
                route.path
            );
        }
    }
}
