//! Loading a config file: the schema and its validation ([`crate::config`], which reads
//! nothing else), then what it names on disk, relative to the file: TLS certificates and edge
//! auth keys, loaded once here so `manifold check` and a reload refuse them before serving.

use crate::config::{Config, ConfigError};
use std::path::Path;

/// Reads, parses and validates a config file, and loads what it names.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "-", format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// [`load`] from text; `path` names it in errors and anchors relative file names.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let config = Config::parse(text, path)?;
    check_files(&config, path).map_err(|e| e.on_line_of(text))?;
    Ok(config)
}

fn check_files(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let err = |field: String, message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field,
        message,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(t) = &config.tls {
        t.load(base).map_err(|(f, m)| err(f, m))?;
    }
    for (i, t) in config.tenants.iter().enumerate() {
        if let Some(a) = &t.auth {
            crate::auth::TenantAuth::new(a, base)
                .map_err(|(f, m)| err(format!("tenants[{i}].auth.{f}"), m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::tests::MIN;

    #[test]
    fn auth_is_checked_with_keys_relative_to_the_config_file() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/keys/manifold.toml");
        let with = |auth: &str| parse(&format!("{MIN}[tenants.auth]\n{auth}"), &keys);
        let ok = with("alg = \"ES256\"\nkey_file = \"test-only-es256-public.pem\"\n").unwrap();
        let a = ok.tenants[0].auth.as_ref().unwrap();
        assert_eq!(a.leeway, Duration::from_secs(30));
        assert_eq!(
            (a.query_param.as_str(), a.header.as_str()),
            ("token", "authorization")
        );
        let cases = [
            ("alg = \"PS256\"\n", "tenants[0].auth.alg"),
            (
                "alg = \"RS256\"\nkey_file = \"nope.pem\"\n",
                "tenants[0].auth.key_file",
            ),
            (
                "alg = \"ES256\"\nkey_file = \"test-only-p384-public.pem\"\n",
                "tenants[0].auth.key_file",
            ),
            ("alg = \"HS256\"\n", "tenants[0].auth.secret"),
            (
                "alg = \"HS256\"\nsecret = \"env:MANIFOLD_NO_SUCH_VAR\"\n",
                "tenants[0].auth.secret",
            ),
            (
                "alg = \"HS256\"\nsecrets = \"x\"\n",
                "tenants[0].auth.secrets",
            ),
            (
                "alg = \"HS256\"\nleeway = \"soon\"\n",
                "tenants[0].auth.leeway",
            ),
        ];
        for (auth, field) in cases {
            let e = with(auth).unwrap_err();
            assert_eq!(e.field, field, "{auth}: {e}");
        }
        // relative to the config file, not the working directory
        let e = parse(
            &format!(
                "{MIN}[tenants.auth]\nalg = \"ES256\"\nkey_file = \"test-only-es256-public.pem\"\n"
            ),
            Path::new("/nonexistent/manifold.toml"),
        )
        .unwrap_err();
        assert_eq!(e.field, "tenants[0].auth.key_file");
    }
}
