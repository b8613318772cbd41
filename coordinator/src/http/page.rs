//! The status page's HTML: small shells that load the embedded script and style sheet
//! (`assets/`, compiled into the binary: no CDN, no web font), which render the JSON API and
//! refresh it every second; and the 404 and 401 pages.
//!
//! The shells carry no job data but the job id of `/jobs/{id}`, escaped; the script puts
//! every user-controlled string (app names, errors, worker ids) into the page as text
//! (`textContent`, SVG `<title>`), never as markup. The content security policy allows
//! scripts, styles and fetches from the page's own origin only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// A short hash of both assets: their URLs change with their content, so they can be cached
/// for long and a new binary's pages never run an old script.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    hash.update(APP_JS);
    hash.update(STYLE_CSS);
    hex::encode(&hash.finalize()[..6])
});

/// What every HTML answer carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole HTML document; `title` and `body` are HTML already (escape what goes in).
fn document(status: StatusCode, title: &str, body_attrs: &str, body: &str) -> Response {
    let version = &*ASSET_VERSION;
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/style.css?v={version}">
<script src="/assets/app.js?v={version}" defer></script>
</head>
<body{body_attrs}>
<header class="top"><a class="brand" href="/">mr</a><span class="subtitle">MapReduce coordinator</span><span id="live" class="live">loading…</span></header>
<main>
{body}
</main>
</body>
</html>
"#
    );
    (status, html_headers(), html).into_response()
}

fn html_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// `/`: the jobs and the workers.
pub(crate) fn index() -> Response {
    document(
        StatusCode::OK,
        "mr: jobs and workers",
        r#" data-page="index""#,
        r#"<section>
<h2>Jobs <span id="jobs-note" class="muted"></span></h2>
<table id="jobs" class="grid">
<thead><tr><th>Job</th><th>App</th><th>State</th><th>Map</th><th>Reduce</th><th>Submitted</th><th>Duration</th><th>Error or warning</th></tr></thead>
<tbody><tr><td colspan="8" class="muted">Loading…</td></tr></tbody>
</table>
</section>
<section>
<h2>Workers</h2>
<table id="workers" class="grid">
<thead><tr><th>Worker</th><th>Host</th><th>State</th><th>Current task</th><th class="num">Done</th><th class="num">Failed</th><th>Last seen</th></tr></thead>
<tbody><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
</table>
</section>
<noscript><p>This page needs JavaScript; the same data is at <a href="/api/jobs">/api/jobs</a> and <a href="/api/workers">/api/workers</a>.</p></noscript>"#,
    )
}

/// `/jobs/{id}` of a job that exists.
pub(crate) fn job(job_id: &str) -> Response {
    let id = escape(job_id);
    document(
        StatusCode::OK,
        &format!("mr: job {id}"),
        &format!(r#" data-page="job" data-job="{id}""#),
        &format!(
            r#"<p class="crumbs"><a href="/">All jobs</a> / job <code>{id}</code></p>
<section>
<h2>Job <code>{id}</code> <span id="job-state"></span></h2>
<div id="summary" class="summary"><p class="muted">Loading…</p></div>
</section>
<section>
<h2>Counters</h2>
<div id="counters"><p class="muted">Loading…</p></div>
</section>
<section>
<h2>Timeline <span id="timeline-note" class="muted"></span></h2>
<div id="legend" class="legend"></div>
<div id="gantt" class="gantt"></div>
</section>
<section>
<h2>Errors</h2>
<div id="errors"><p class="muted">Loading…</p></div>
</section>
<noscript><p>This page needs JavaScript; the same data is at <a href="/api/jobs/{id}">/api/jobs/{id}</a>.</p></noscript>"#
        ),
    )
}

/// `/jobs/{id}` of a job this coordinator does not hold.
pub(crate) fn unknown_job(job_id: &str) -> Response {
    let id = escape(job_id);
    document(
        StatusCode::NOT_FOUND,
        "mr: no such job",
        r#" data-page="none""#,
        &format!(
            r#"<section class="notice">
<h2>No job <code>{id}</code></h2>
<p>This coordinator holds no job with that id: it may never have existed, or it ended
longer ago than the job retention (<code>--job-retention</code>) and was forgotten.</p>
<p><a href="/">See all jobs</a></p>
</section>"#
        ),
    )
}

/// Any other path.
pub(crate) fn not_found() -> Response {
    document(
        StatusCode::NOT_FOUND,
        "mr: not found",
        r#" data-page="none""#,
        r#"<section class="notice"><h2>Not found</h2><p>There is no page here. <a href="/">See all jobs</a></p></section>"#,
    )
}

/// A request without the token: 401, with how to supply it.
pub(crate) fn unauthorized(html: bool, reason: &str) -> Response {
    let challenge = (
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="mr""#),
    );
    if !html {
        let text = format!(
            "{reason}: send 'Authorization: Bearer <token>' (the coordinator's --auth-token)\n"
        );
        return (StatusCode::UNAUTHORIZED, [challenge], text).into_response();
    }
    let mut response = document(
        StatusCode::UNAUTHORIZED,
        "mr: token needed",
        r#" data-page="none""#,
        &format!(
            r#"<section class="notice">
<h2>Token needed</h2>
<p>{}. This coordinator requires its token (<code>--auth-token</code>,
<code>MR_AUTH_TOKEN</code>). Open this address once with <code>?token=&lt;token&gt;</code>
added (for example <code>/?token=…</code>): the page then keeps it in an HttpOnly cookie
for this browser session. Programs send <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</section>"#,
            escape(reason)
        ),
    );
    response.headers_mut().insert(challenge.0, challenge.1);
    response
}

/// `/assets/app.js` and `/assets/style.css`.
pub(crate) fn asset(name: &str) -> Response {
    let (content_type, body) = match name {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return not_found(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }
}
