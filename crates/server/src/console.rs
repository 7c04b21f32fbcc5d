//! The web console, embedded: `web/` is built by this crate's build script and its files are
//! compiled into the binary with `rust-embed`. Page paths answer with the app's `index.html`;
//! hashed assets are cached for a year; every answer carries a strict Content-Security-Policy
//! so that nothing but the console's own script ever runs in its origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(rust_embed::Embed)]
#[folder = "$OUT_DIR/web"]
struct Assets;

/// No inline or foreign script, no plugins, no framing; styles may be inline (the table sets
/// row positions through `style`).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn answer(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mut response = file.data.into_owned().into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            );
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
            response
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn index() -> Response {
    answer("index.html", "no-cache")
}

async fn asset(Path(path): Path<String>) -> Response {
    answer(
        &format!("assets/{path}"),
        "public, max-age=31536000, immutable",
    )
}

/// `/`, the console's pages and its assets.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/flows", get(index))
        .route("/graph", get(index))
        .route("/alerts", get(index))
        .route("/assets/{*path}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_console_is_embedded() {
        let index = Assets::get("index.html").expect("index.html embedded");
        let text = String::from_utf8_lossy(&index.data);
        assert!(text.contains("<div id=\"root\">"), "{text}");
        assert!(Assets::iter().any(|name| name.starts_with("assets/") && name.ends_with(".js")));
    }
}
