//! What a tenant's sections must hold: the checks of `tenants[i]`, section by section.

use super::*;

/// What earlier tenants took: ids and host names are one tenant's each.
#[derive(Default)]
pub(super) struct Seen {
    ids: HashSet<String>,
    hosts: HashSet<String>,
}

impl TenantConfig {
    /// The tenant's sections, as `tenants[i]`.
    pub(super) fn validate(
        &self,
        i: usize,
        seen: &mut Seen,
        plugins: &PluginsConfig,
    ) -> Result<(), Invalid> {
        self.validate_routing(i, seen)?;
        self.validate_fetching(i)?;
        if let Some(p) = &self.plugin {
            p.validate(i, plugins)?;
        }
        self.validate_creatives(i)
    }

    /// Who it is and how requests reach it: id, hosts, path prefix, origins.
    fn validate_routing(&self, i: usize, seen: &mut Seen) -> Result<(), Invalid> {
        let t = self;
        let f = |name: &str| format!("tenants[{i}].{name}");
        match t.resolved_admin_token() {
            Err(m) => return Err(Invalid::new(f("admin_token"), m)),
            Ok(Some(tok)) if tok.len() < 16 => {
                return Err(Invalid::new(
                    f("admin_token"),
                    "must be at least 16 characters",
                ))
            }
            _ => {}
        }
        let id_ok = !t.id.is_empty()
            && t.id.len() <= 64
            && t.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(Invalid::new(
                f("id"),
                format!("{:?} must be 1-64 chars of a-z 0-9 - _", t.id),
            ));
        }
        if !seen.ids.insert(t.id.clone()) {
            return Err(Invalid::new(
                f("id"),
                format!("{:?} is used by another tenant", t.id),
            ));
        }
        for (j, h) in t.hosts.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains(' ') {
                return Err(Invalid::new(
                    format!("tenants[{i}].hosts[{j}]"),
                    format!("{h:?} is not a host name"),
                ));
            }
            if !seen.hosts.insert(h.clone()) {
                return Err(Invalid::new(
                    format!("tenants[{i}].hosts[{j}]"),
                    format!("{h:?} is routed to another tenant already"),
                ));
            }
        }
        if !t.path_prefix && t.hosts.is_empty() {
            return Err(Invalid::new(
                f("hosts"),
                "tenant is unreachable: give it hosts or set path_prefix = true",
            ));
        }
        OriginUrl::parse(&t.origin).map_err(|m| Invalid::new(f("origin"), m))?;
        for (j, o) in t.failover.iter().enumerate() {
            OriginUrl::parse(o)
                .map_err(|m| Invalid::new(format!("tenants[{i}].failover[{j}]"), m))?;
        }
        if t.failover.len() > 8 {
            return Err(Invalid::new(f("failover"), "at most 8 backup origins"));
        }
        Ok(())
    }

    /// How its origins are fetched and cached.
    fn validate_fetching(&self, i: usize) -> Result<(), Invalid> {
        let t = self;
        let f = |name: &str| format!("tenants[{i}].{name}");
        t.health_check.validate(&f("health_check"))?;
        for (name, d) in [
            ("connect_timeout", t.connect_timeout),
            ("read_timeout", t.read_timeout),
        ] {
            if d.is_zero() {
                return Err(Invalid::new(f(name), "must be positive"));
            }
        }
        if t.max_manifest_size.as_u64() == 0 {
            return Err(Invalid::new(f("max_manifest_size"), "must be positive"));
        }
        if let Some(c) = &t.cors {
            c.validate(&format!("tenants[{i}].cors"))?;
        }
        if let Some(p) =
            t.cache.volatile_params.iter().find(|p| {
                p.is_empty() || p.contains(['&', '=', '?', '#', ' ']) || p.starts_with("mf_")
            })
        {
            return Err(Invalid::new(
                f("cache.volatile_params"),
                format!("{p:?} is not a query parameter name (mf_* are the proxy's own)"),
            ));
        }
        if t.cache.live_manifest_ttl.is_some_and(|d| d.is_zero()) {
            return Err(Invalid::new(
                f("cache.live_manifest_ttl"),
                "must be positive",
            ));
        }
        Ok(())
    }

    /// Its creatives, and the slate an outage needs.
    fn validate_creatives(&self, i: usize) -> Result<(), Invalid> {
        let t = self;
        let f = |name: &str| format!("tenants[{i}].{name}");
        let mut names = HashSet::new();
        for (j, c) in t.creatives.iter().enumerate() {
            let cf = |n: &str| format!("tenants[{i}].creatives[{j}].{n}");
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                return Err(Invalid::new(
                    cf("name"),
                    format!("{:?} is empty or used twice", c.name),
                ));
            }
            if !(c.duration > 0.0 && c.duration <= 3600.0) {
                return Err(Invalid::new(
                    cf("duration"),
                    "must be between 0 and 3600 seconds",
                ));
            }
            if c.hls.is_none() && c.hls_fmp4.is_none() {
                return Err(Invalid::new(
                    cf("hls"),
                    "a creative needs hls and/or hls_fmp4",
                ));
            }
            for p in [&c.hls, &c.hls_fmp4].into_iter().flatten() {
                if !p.starts_with('/') || p.split('/').any(|s| s == "..") {
                    return Err(Invalid::new(
                        cf("hls"),
                        format!("{p:?} must be an absolute path on the origin"),
                    ));
                }
            }
        }
        if t.cache.on_outage == OnOutage::Slate && !t.creatives.iter().any(|c| c.slate) {
            return Err(Invalid::new(
                f("cache.on_outage"),
                "\"slate\" needs a creative with slate = true in the tenant's catalog",
            ));
        }
        if t.creatives.iter().filter(|c| c.slate).count() > 1 {
            return Err(Invalid::new(
                f("creatives"),
                "at most one creative can be the slate",
            ));
        }
        Ok(())
    }

    /// `[tenants.ad_server]`, checked after `[sessions]`.
    pub(super) fn validate_ad_server(&self, i: usize) -> Result<(), Invalid> {
        let t = self;
        if let Some(a) = &t.ad_server {
            if t.creatives.is_empty() {
                return Err(Invalid::new(
                    format!("tenants[{i}].creatives"),
                    "ad_server needs the tenant's creatives: VAST media files are mapped to them",
                ));
            }
            let url = a.url.replace(['[', ']'], "");
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || Url::parse(&url).is_err()
            {
                return Err(Invalid::new(
                    format!("tenants[{i}].ad_server.url"),
                    format!("{:?} is not an http(s) URL template", a.url),
                ));
            }
            if a.budget > crate::plugin::capabilities::MAX_HOST_WAIT {
                return Err(Invalid::new(
                    format!("tenants[{i}].ad_server.budget"),
                    format!(
                        "at most {:?} (what a plugin call may wait on the host)",
                        crate::plugin::capabilities::MAX_HOST_WAIT
                    ),
                ));
            }
            if a.timeout.is_zero() || a.budget < a.timeout {
                return Err(Invalid::new(
                    format!("tenants[{i}].ad_server.budget"),
                    "timeout must be positive and budget at least the timeout",
                ));
            }
        }
        Ok(())
    }
}

impl TenantPluginConfig {
    fn validate(&self, i: usize, plugins: &PluginsConfig) -> Result<(), Invalid> {
        let f = |name: &str| format!("tenants[{i}].{name}");
        let p = self;
        {
            if let Some(file) = &p.file {
                if file.trim().is_empty() {
                    return Err(Invalid::new(
                        f("plugin.file"),
                        "must name a .wasm file or sha256:<hex>",
                    ));
                }
                if let Some(hex) = file.strip_prefix("sha256:") {
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(Invalid::new(
                            f("plugin.file"),
                            format!("{file:?} is not sha256:<64 hex digits>"),
                        ));
                    }
                }
            }
            if p.deadline.is_zero() || p.deadline > Duration::from_secs(10) {
                return Err(Invalid::new(
                    f("plugin.deadline"),
                    "must be between 1ms and 10s",
                ));
            }
            if p.max_instances == Some(0) {
                return Err(Invalid::new(
                    f("plugin.max_instances"),
                    "must be at least 1",
                ));
            }
            if p.memory.as_u64() < 1024 * 1024 || p.memory > plugins.max_memory {
                return Err(Invalid::new(
                    f("plugin.memory"),
                    format!(
                        "must be between 1 MiB and plugins.max_memory ({})",
                        plugins.max_memory
                    ),
                ));
            }
            crate::plugin::capabilities::Capabilities::parse(&p.capabilities)
                .map_err(|m| Invalid::new(f("plugin.capabilities"), m))?;
            if let Some(h) = p
                .pass_headers
                .iter()
                .find(|h| h.to_ascii_lowercase().starts_with(CLAIM_PREFIX))
            {
                return Err(Invalid::new(
                    f("plugin.pass_headers"),
                    format!("{h:?}: jwt.* names are the viewer token's claims (auth.claims)"),
                ));
            }
            if p.config.len() > 64 * 1024 {
                return Err(Invalid::new(f("plugin.config"), "is longer than 64 KiB"));
            }
        }
        Ok(())
    }
}
