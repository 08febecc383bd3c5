//! Routing: any host, path and query (split from the input at NUL bytes) routes or is
//! refused, never panics; a routed request never names a dot segment, and its origin path
//! stays below the tenant's origin base.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifold::config::Config;
use manifold::route::Routes;
use std::path::Path;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[[tenants]]
id = "t"
hosts = ["t.example"]
origin = "http://127.0.0.1:9/base/"
[tenants.cache]
volatile_params = ["sid"]

[[tenants]]
id = "u"
origin = "http://127.0.0.1:9"
[tenants.cache]
ignore_query = true
"#;

fn routes() -> &'static Routes {
    static R: OnceLock<Routes> = OnceLock::new();
    R.get_or_init(|| {
        let c = Config::parse(CONFIG, Path::new("fuzz.toml")).expect("config");
        Routes::new(&c, Path::new("fuzz.toml")).expect("routes")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let host = parts.next().filter(|h| !h.is_empty());
    let path = parts.next().unwrap_or("/");
    let query = parts.next();
    if let Ok(r) = routes().route(host, path, query) {
        // the path part: a query may hold anything, origins do not resolve dots in it
        let path = r.origin_path.split('?').next().unwrap_or_default();
        assert!(
            !path.split('/').any(|s| s == ".." || s == "."),
            "{:?}",
            r.origin_path
        );
        assert!(r.content_path.starts_with('/'), "{:?}", r.content_path);
    }
});
