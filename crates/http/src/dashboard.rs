//! The dashboard's pages: one HTML shell for every page, and its script and stylesheet,
//! embedded in the binary (no Node, nothing fetched from elsewhere). The script is a client of
//! `/api/v1` and `/auth` like any other; this module serves files and decides nothing about data.
//!
//! Every answer carries a Content-Security-Policy that allows this origin's script and style
//! only (no inline script, no other origin), and may not be framed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

const SHELL: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// The pages the script draws (the shell answers for each; the script routes).
pub const PAGES: &[&str] = &[
    "/",
    "/sign-in",
    "/invitation",
    "/reset-password",
    "/outbox",
    "/live",
    "/calls",
    "/calls/{id}",
    "/appointments",
    "/contacts",
    "/contacts/{id}",
    "/members",
    "/dnc",
    "/knowledge-base",
    "/settings",
    "/integrations",
    "/access-log",
    "/security",
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The assets' version (a hash of their text), so a new binary's assets are fetched anew.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(SCRIPT);
        h.update(STYLE);
        h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

fn with_headers(
    mut response: Response,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn shell() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let page = PAGE.get_or_init(|| SHELL.replace("__VERSION__", version()));
    with_headers(
        (StatusCode::OK, page.as_str()).into_response(),
        "text/html; charset=utf-8",
        "no-cache",
    )
}

async fn script() -> Response {
    with_headers(
        SCRIPT.into_response(),
        "text/javascript; charset=utf-8",
        "public, max-age=31536000, immutable",
    )
}

async fn style() -> Response {
    with_headers(
        STYLE.into_response(),
        "text/css; charset=utf-8",
        "public, max-age=31536000, immutable",
    )
}

/// The dashboard's routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style));
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pages_stay_small() {
        // ~100 KB before its data, at most: the shell, the script and the stylesheet.
        let total = super::SHELL.len() + super::SCRIPT.len() + super::STYLE.len();
        assert!(total < 100_000, "{total} bytes");
    }
}
