//! **[C]** The server's settings, which the routes check and some handlers read.

use super::Render;
use super::request::Request;

/// The server's settings.
pub(super) struct Settings {
    /// The bearer token requests must carry (where a route needs it).
    pub(super) token: Option<String>,
    /// Renders `/metrics`, if the server serves it.
    pub(super) metrics: Option<Render>,
    /// Whether the sampling rate may be changed over HTTP without a token, and set below
    /// `MIN_SAMPLE_RATE` (`Server::allow_changes`).
    pub(super) allow_changes: bool,
}

impl Settings {
    /// Whether `request` carries the token, if one is set.
    pub(super) fn authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Compared in time independent of where they differ.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let settings = Settings {
            token: Some("s3cret".to_owned()),
            metrics: None,
            allow_changes: false,
        };
        let with = |auth: Option<&str>| Request {
            method: "GET".to_owned(),
            path: "/debug/memsentry/snapshot".to_owned(),
            query: Vec::new(),
            authorization: auth.map(str::to_owned),
            body: Vec::new(),
        };
        assert!(settings.authorized(&with(Some("Bearer s3cret"))));
        assert!(!settings.authorized(&with(Some("Bearer s3cre"))));
        assert!(!settings.authorized(&with(Some("Bearer s3creT"))));
        assert!(!settings.authorized(&with(Some("s3cret"))));
        assert!(!settings.authorized(&with(None)));
    }
}
