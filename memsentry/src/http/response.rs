//! **[C]** An answer: status, content type, extra headers and body, written as an
//! HTTP/1.1 response that closes the connection.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

/// The content type of the text answers.
pub(super) const TEXT: &str = "text/plain; charset=utf-8";

/// The content type of the JSON answers.
pub(super) const JSON: &str = "application/json";

/// An answer.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A 200 with `body`.
    pub(super) fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A 200 with `document` as JSON.
    pub(super) fn json(document: &impl Serialize) -> Response {
        Response::ok(JSON, crate::json::to_string(document))
    }

    /// A status with a one-line reason as its body.
    pub(super) fn error(status: u16, reason: &str) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: format!("{reason}\n").into_bytes(),
        }
    }

    /// The answer with one more header line.
    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the answer; only its head if `head_only` (a HEAD request).
    pub(super) fn write(&self, stream: &mut impl Write, head_only: bool) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            302 => "Found",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if head_only {
            return Ok(());
        }
        stream.write_all(&self.body)
    }
}
