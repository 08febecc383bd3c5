//! The last phase of every request: its metrics, the beacons an ad segment served makes due,
//! and the access log line (viewer tokens stripped).

use super::*;

impl EdgeProxy {
    pub(super) fn log(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (tenant, class) = match ctx.route.as_ref() {
            Some(r) => (r.tenant.id.as_str(), r.class.as_str()),
            None => ("-", "-"),
        };
        let m = &METRICS;
        m.requests
            .with_label_values(&[tenant, class, status_label(status)])
            .inc();
        m.request_seconds
            .with_label_values(&[tenant, class])
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(r) = ctx.route.as_ref() {
            if let (Some(token), Some((b, slot)), true) = (
                &r.session,
                &r.ad_slot,
                e.is_none() && (200..300).contains(&status),
            ) {
                // an ad segment at a tracked position was served: its beacons are due
                let served = crate::tracking::Served {
                    token,
                    break_id: b,
                    slot: *slot,
                    path: &r.content_path,
                };
                self.beacons.on_ad_segment(&r.tenant, served);
            }
        }
        if ctx.route.is_some() {
            let result = match &ctx.cache_status {
                Some(cs) => cache_result(cs),
                None => cache_status::result_of(&session.cache),
            };
            m.cache.with_label_values(&[tenant, class, result]).inc();
        }
        if !tracing::enabled!(target: "manifold::access", tracing::Level::INFO) {
            return;
        }
        let cache = match &ctx.cache_status {
            Some(cs) => cs.clone(),
            None => cache_status::for_proxied(&session.cache, status),
        };
        let req = session.req_header();
        // viewer tokens stay out of the logs
        let path = match ctx.route.as_ref().and_then(|r| r.tenant.auth.as_ref()) {
            Some(a) => a.strip_param(&req.uri.to_string()),
            None => req.uri.to_string(),
        };
        tracing::info!(
            target: "manifold::access",
            rid = %ctx.request_id,
            tenant,
            method = %req.method,
            path = %path,
            status,
            class,
            cache = %cache,
            plugin = ctx.plugin.as_deref().unwrap_or("-"),
            ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.to_string()),
        );
    }
}

/// Status as a label: the code (a bounded set), `0` when no response was written.
fn status_label(status: u16) -> &'static str {
    const CODES: [(u16, &str); 16] = [
        (200, "200"),
        (206, "206"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (410, "410"),
        (416, "416"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (0, "0"),
    ];
    CODES.iter().find(|(c, _)| *c == status).map_or(
        match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        |(_, l)| *l,
    )
}
