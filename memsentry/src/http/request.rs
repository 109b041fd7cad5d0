//! **[C]** One request read off a connection and parsed: the request line, the two
//! headers the endpoint uses (`Authorization`, `Content-Length`), the body and the
//! percent-decoded query; and the checks of the query the handlers share.

use std::io::{self, Read};

use super::response::Response;

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 1024;

/// A parsed request.
#[derive(Debug, PartialEq)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) authorization: Option<String>,
    pub(super) body: Vec<u8>,
}

/// Reads one request: its head (at most [`MAX_HEAD`]) and body (at most [`MAX_BODY`]).
pub(super) fn read_request(stream: &mut impl Read) -> Result<Request, Response> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(Response::error(431, "request head larger than 8 KiB"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::error(400, "incomplete request")),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Response::error(408, "request not received in time")),
        }
    };
    if head_end > MAX_HEAD {
        return Err(Response::error(431, "request head larger than 8 KiB"));
    }
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| Response::error(400, "request head is not UTF-8"))?;
    let mut request = parse_head(head)?;
    let length = content_length(head)?;
    if length > MAX_BODY {
        return Err(Response::error(413, "request body larger than 1 KiB"));
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Response::error(
                    400,
                    "request body shorter than Content-Length",
                ));
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Response::error(408, "request body not received in time")),
        }
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the request line and the headers memsentry uses.
fn parse_head(head: &str) -> Result<Request, Response> {
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(Response::error(400, "malformed request line"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect::<Result<Vec<_>, Response>>()?;
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization,
        body: Vec::new(),
    })
}

fn content_length(head: &str) -> Result<usize, Response> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map_or(Ok(0), |(_, value)| {
            value
                .trim()
                .parse()
                .map_err(|_| Response::error(400, "bad Content-Length"))
        })
}

fn percent_decode(text: &str) -> Result<String, Response> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Response::error(400, "bad percent-encoding in the query"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Response::error(400, "query is not UTF-8"))
}

impl Request {
    /// A 400 if the request has query parameters, for the paths that take none.
    pub(super) fn no_query(&self) -> Result<(), Response> {
        match self.query.first() {
            Some((key, _)) => Err(unknown_parameter(key)),
            None => Ok(()),
        }
    }

    /// `?debug=` alone: whether the text form is asked for.
    pub(super) fn text_flag(&self) -> Result<bool, Response> {
        let mut text = false;
        for (key, value) in &self.query {
            match key.as_str() {
                "debug" => text = debug_flag(value)?,
                _ => return Err(unknown_parameter(key)),
            }
        }
        Ok(text)
    }
}

pub(super) fn unknown_parameter(key: &str) -> Response {
    Response::error(400, &format!("unknown query parameter {key:?}"))
}

/// The value of `?debug=`: whether the text form is asked for (`1`, or Go's `2`).
pub(super) fn debug_flag(value: &str) -> Result<bool, Response> {
    match value {
        "0" => Ok(false),
        "1" | "2" => Ok(true),
        _ => Err(Response::error(
            400,
            &format!("debug={value:?}: expected 0 or 1"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, u16> {
        read_request(&mut raw.as_bytes()).map_err(|r| r.status)
    }

    #[test]
    fn requests_parse() {
        let request = parse(
            "POST /debug/memsentry/sample_rate?rate=1MiB&x=a%20b+c HTTP/1.1\r\n\
             Host: x\r\nauthorization: Bearer s3cret\r\nContent-Length: 3\r\n\r\nabcdef",
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/debug/memsentry/sample_rate");
        assert_eq!(
            request.query,
            [
                ("rate".to_owned(), "1MiB".to_owned()),
                ("x".to_owned(), "a b c".to_owned())
            ]
        );
        assert_eq!(request.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(request.body, b"abc");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(parse("GET /\r\n\r\n"), Err(400));
        assert_eq!(parse("GET x HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse("GET / SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(parse("GET /?a=%zz HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"),
            Err(413)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
            Err(400)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(9000));
        assert_eq!(parse(&long), Err(431));
        assert_eq!(parse("GET / HTTP/1.1\r\n"), Err(400), "incomplete");
    }
}
