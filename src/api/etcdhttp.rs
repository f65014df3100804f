//! etcd's plain-HTTP endpoints on the client port (etcd:
//! `server/etcdserver/api/etcdhttp/health.go`, `version.go`): `/health`,
//! `/livez`, `/readyz` (and one path per check), `/version`.
//!
//! They share the port with gRPC, as in etcd: [`HttpEndpoints`] sits in
//! front of the gRPC services and answers every request that is not gRPC
//! (HTTP/1.1, or HTTP/2 without a gRPC content type); gRPC requests pass
//! through untouched. Unknown paths get Go's `404 page not found`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tonic::body::Body;

use crate::metrics::{self, METRICS};
use crate::proto::etcdserverpb::{AlarmType, RangeRequest};
use crate::server::Server;
use crate::version;

/// The checks of `/livez` and `/readyz`, in the order they run and print.
const LIVEZ_CHECKS: &[&str] = &["serializable_read"];
const READYZ_CHECKS: &[&str] = &[
    "data_corruption",
    "serializable_read",
    "linearizable_read",
    "non_learner",
];

/// A tower service answering etcd's HTTP endpoints and passing gRPC on.
#[derive(Clone)]
pub struct HttpEndpoints<S> {
    inner: S,
    server: Arc<Server>,
    /// A `--listen-metrics-urls` listener: only `/metrics` and the health
    /// endpoints, no gRPC.
    metrics_only: bool,
}

impl<S> HttpEndpoints<S> {
    pub fn new(inner: S, server: Arc<Server>) -> Self {
        HttpEndpoints {
            inner,
            server,
            metrics_only: false,
        }
    }

    /// The service of a `--listen-metrics-urls` listener.
    pub fn metrics_only(inner: S, server: Arc<Server>) -> Self {
        HttpEndpoints {
            inner,
            server,
            metrics_only: true,
        }
    }
}

/// Whether a metrics listener serves `path` (etcd: `/metrics`, `/health`,
/// `/livez`, `/readyz` and their sub-paths).
fn served_on_metrics_urls(path: &str) -> bool {
    ["/metrics", "/health", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn is_grpc(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

impl<S> tower_service::Service<Request<Body>> for HttpEndpoints<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.metrics_only && !served_on_metrics_urls(req.uri().path()) {
            let resp = go_error(StatusCode::NOT_FOUND, "404 page not found");
            return Box::pin(async move { Ok(resp.map(Body::new)) });
        }
        if is_grpc(&req) && !self.metrics_only {
            let method = metrics::grpc_method(req.uri().path());
            if let Some(m) = method {
                METRICS.grpc_started(m);
            }
            if !served_to_learners(req.uri().path()) && self.server.core().is_learner() {
                // etcd's interceptors: a learner serves Status, serializable
                // Range (checked by the KV service) and Snapshot only.
                let status = tonic::Status::from(crate::error::Error::NotSupportedForLearner);
                if let Some(m) = method {
                    METRICS.grpc_handled(m, status.code());
                }
                let resp = status.into_http::<Body>();
                return Box::pin(async move { Ok(resp) });
            }
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let mut resp = fut.await?;
                // A call that fails at once has its status in the headers
                // ("trailers-only"); otherwise it is in the trailers.
                if let Some(status) = tonic::Status::from_header_map(resp.headers()) {
                    if let Some(m) = method {
                        METRICS.grpc_handled(m, status.code());
                    }
                    super::rewrite_limit_status(resp.headers_mut());
                    return Ok(resp);
                }
                match method {
                    // A unary call that got this far has its message and
                    // an OK status coming (tonic sends failures trailers-only).
                    Some(m) if m.is_unary() => {
                        METRICS.grpc_handled(m, tonic::Code::Ok);
                        Ok(resp)
                    }
                    Some(m) => Ok(resp.map(|body| {
                        Body::new(CountingBody {
                            inner: body,
                            method: Some(m),
                        })
                    })),
                    None => Ok(resp),
                }
            });
        }
        let server = self.server.clone();
        // etcd's CORS handler wraps the client URLs' HTTP, not the metrics
        // URLs'.
        let cors = !self.metrics_only;
        Box::pin(async move {
            let mut resp = if cors && req.method() == Method::OPTIONS {
                // A CORS preflight: the headers below are the answer.
                Response::new(String::new())
            } else {
                handle(&server, req.method(), req.uri()).await
            };
            if cors {
                add_cors_headers(resp.headers_mut());
            }
            Ok(resp.map(Body::new))
        })
    }
}

/// gRPC methods a learner serves (etcd: `isRPCSupportedForLearner` and
/// the stream interceptor's exception for Snapshot).
fn served_to_learners(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Maintenance/Status"
            | "/etcdserverpb.KV/Range"
            | "/etcdserverpb.Maintenance/Snapshot"
    ) || !path.starts_with("/etcdserverpb.")
}

/// A gRPC response body that counts the call as handled when its
/// trailers (with `grpc-status`) pass.
struct CountingBody {
    inner: Body,
    method: Option<metrics::GrpcMethod>,
}

impl http_body::Body for CountingBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(method) = self.method.take()
                {
                    let code = tonic::Status::from_header_map(trailers)
                        .map_or(tonic::Code::Ok, |s| s.code());
                    METRICS.grpc_handled(method, code);
                }
            }
            // Ended without a status (the stream was cut off).
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(method) = self.method.take() {
                    METRICS.grpc_handled(method, tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What etcd's default `--cors=*` adds to every HTTP response.
fn add_cors_headers(h: &mut http::HeaderMap) {
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
}

/// A response as Go's `http.Error` writes it: the text and a newline.
fn go_error(status: StatusCode, text: &str) -> Response<String> {
    let mut r = Response::new(format!("{text}\n"));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn method_not_allowed() -> Response<String> {
    let mut r = go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

fn ok(content_type: &'static str, body: String) -> Response<String> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one HTTP request.
pub async fn handle(server: &Server, method: &Method, uri: &http::Uri) -> Response<String> {
    let query = Query::parse(uri.query().unwrap_or(""));
    let path = uri.path();
    let (kind, checks): (&str, &[&str]) = match path {
        "/health" => {
            if method != Method::GET {
                return method_not_allowed();
            }
            return health(server, &query).await;
        }
        "/version" => {
            if method != Method::GET {
                return method_not_allowed();
            }
            return ok(
                "application/json",
                format!(
                    r#"{{"etcdserver":"{}","etcdcluster":"{}","storage":"{}"}}"#,
                    version::ETCD_API_VERSION,
                    version::ETCD_CLUSTER_VERSION,
                    version::STORAGE_VERSION
                ),
            );
        }
        // Any method, as etcd's Prometheus handler.
        "/metrics" => {
            return ok(
                "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
                metrics::render(&server.maintenance().metric_gauges()),
            );
        }
        "/livez" => ("livez", LIVEZ_CHECKS),
        "/readyz" => ("readyz", READYZ_CHECKS),
        _ => {
            let one = path
                .strip_prefix("/livez/")
                .map(|c| (LIVEZ_CHECKS, c))
                .or_else(|| path.strip_prefix("/readyz/").map(|c| (READYZ_CHECKS, c)));
            match one.and_then(|(all, c)| all.iter().find(|n| **n == c)) {
                Some(name) => {
                    if method != Method::GET {
                        return method_not_allowed();
                    }
                    return run_checks(server, &[name], query.has("verbose")).await;
                }
                None => return go_error(StatusCode::NOT_FOUND, "404 page not found"),
            }
        }
    };
    if method != Method::GET {
        return method_not_allowed();
    }
    let excluded = query.all("exclude");
    let selected: Vec<&str> = checks
        .iter()
        .copied()
        .filter(|c| !excluded.contains(c))
        .collect();
    for e in &excluded {
        if !checks.contains(e) {
            tracing::warn!(check = %e, kind, "some health checks cannot be excluded");
        }
    }
    run_checks(server, &selected, query.has("verbose")).await
}

/// `/health`: etcd's JSON verdict: alarms (unless excluded by type), the
/// leader (unless `serializable=true`), then a read.
async fn health(server: &Server, query: &Query) -> Response<String> {
    let serializable = query.first("serializable") == Some("true");
    let excluded = query.all("exclude");
    let alarm = server
        .maintenance()
        .alarms(AlarmType::None as i32)
        .into_iter()
        .filter_map(|a| AlarmType::try_from(a.alarm).ok())
        .find(|t| !excluded.contains(&t.as_str_name()));
    let verdict = if let Some(t) = alarm {
        Err(match t {
            AlarmType::Nospace => "ALARM NOSPACE",
            AlarmType::Corrupt => "ALARM CORRUPT",
            AlarmType::None => "ALARM UNKNOWN",
        }
        .to_string())
    } else if !serializable && !server.core().has_leader() {
        Err("RAFT NO LEADER".to_string())
    } else {
        read_check(server, serializable)
            .await
            .map_err(|e| format!("RANGE ERROR:{e}"))
    };
    let counter = if verdict.is_ok() {
        &METRICS.health_success
    } else {
        &METRICS.health_failures
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match verdict {
        Ok(()) => ok(
            "text/plain; charset=utf-8",
            r#"{"health":"true","reason":""}"#.to_string(),
        ),
        Err(reason) => {
            tracing::warn!(%reason, "serving /health false");
            go_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    r#"{{"health":"false","reason":"{}"}}"#,
                    json_escape(&reason)
                ),
            )
        }
    }
}

/// Runs the named checks; 200 `ok` when all pass (the per-check lines only
/// with `?verbose`), else 503 with every line.
async fn run_checks(server: &Server, names: &[&str], verbose: bool) -> Response<String> {
    let mut lines = String::new();
    let mut failed = false;
    for name in names {
        let result = match *name {
            "data_corruption" => {
                if server
                    .maintenance()
                    .alarms(AlarmType::Corrupt as i32)
                    .is_empty()
                {
                    Ok(())
                } else {
                    Err("alarm activated: CORRUPT".to_string())
                }
            }
            "serializable_read" => read_check(server, true).await,
            "linearizable_read" => read_check(server, false).await,
            "non_learner" => {
                if server.core().is_learner() {
                    Err("is learner".to_string())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => lines.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                failed = true;
                lines.push_str(&format!("[-]{name} failed: {e}\n"));
            }
        }
    }
    if failed {
        tracing::error!(reason = %lines.trim_end(), "health check error");
        return go_error(StatusCode::SERVICE_UNAVAILABLE, &lines);
    }
    let mut body = if verbose { lines } else { String::new() };
    body.push_str("ok\n");
    let mut r = ok("text/plain; charset=utf-8", body);
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// etcd's read check: a keys-only, limit-1 Range of the empty key.
async fn read_check(server: &Server, serializable: bool) -> Result<(), String> {
    let req = RangeRequest {
        keys_only: true,
        limit: 1,
        serializable,
        ..Default::default()
    };
    server
        .kv()
        .range(&req)
        .await
        .map(|_| ())
        .map_err(|e| e.message().to_string())
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A decoded query string (`application/x-www-form-urlencoded`, as Go's
/// `URL.Query` reads it).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: &str) -> Query {
        let mut pairs = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            if let (Some(k), Some(v)) = (unescape(k), unescape(v)) {
                pairs.push((k, v));
            }
        }
        Query(pairs)
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `key`.
    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_go() {
        let q = Query::parse("exclude=NOSPACE&exclude=&verbose&serializable=true&x=a%20b+c");
        assert_eq!(q.all("exclude"), vec!["NOSPACE"]);
        assert!(q.has("verbose"));
        assert_eq!(q.first("serializable"), Some("true"));
        assert_eq!(q.first("x"), Some("a b c"));
        assert!(!q.has("exclud"));
        // A bad escape drops the pair, as Go does.
        assert!(!Query::parse("a=%zz").has("a"));
    }

    #[test]
    fn json_strings_escape_like_go() {
        assert_eq!(
            json_escape(r#"RANGE ERROR:a "b" <c>"#),
            r#"RANGE ERROR:a \"b\" \u003cc\u003e"#
        );
    }
}
