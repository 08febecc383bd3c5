//! `manifold plugin new NAME --lang ts|rust`: a plugin project that builds and passes
//! `manifold plugin check` as it is. The SDK and the WIT contract are written into it
//! (`vendor/`, `wit/`) from this binary, so the project needs nothing but the registries.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    TypeScript,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "rust" | "rs" => Ok(Lang::Rust),
            "ts" | "typescript" => Ok(Lang::TypeScript),
            _ => Err(format!("unknown language `{s}`: ts or rust")),
        }
    }
}

const WIT: &str = include_str!("../../wit/plugin.wit");

/// A file of plugins/sdk-ts, written to `vendor/sdk-ts/` of a TypeScript project.
macro_rules! sdk_ts {
    ($path:literal) => {
        (
            concat!("vendor/sdk-ts/", $path),
            include_str!(concat!("../../plugins/sdk-ts/", $path)),
        )
    };
}

const TS: &[(&str, &str)] = &[
    ("plugin.ts", include_str!("../scaffold/plugin.ts")),
    ("package.json", include_str!("../scaffold/package.json")),
    ("tsconfig.json", include_str!("../scaffold/tsconfig.json")),
    sdk_ts!("package.json"),
    sdk_ts!("package-lock.json"),
    sdk_ts!("build.mjs"),
    sdk_ts!("tsconfig.json"),
    sdk_ts!("src/sdk.ts"),
    sdk_ts!("src/wasi.d.ts"),
    sdk_ts!("types/lean-session-plugin.d.ts"),
    sdk_ts!("types/interfaces/manifold-plugin-host.d.ts"),
    sdk_ts!("types/interfaces/manifold-plugin-low-latency.d.ts"),
    sdk_ts!("types/interfaces/manifold-plugin-segments.d.ts"),
    sdk_ts!("types/interfaces/manifold-plugin-types.d.ts"),
];

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../scaffold/Cargo.toml")),
    ("src/lib.rs", include_str!("../scaffold/lib.rs")),
    (
        ".cargo/config.toml",
        include_str!("../scaffold/cargo-config.toml"),
    ),
    // the versions the samples build with
    ("Cargo.lock", include_str!("../../plugins/Cargo.lock")),
    (
        "vendor/sdk/Cargo.toml",
        include_str!("../scaffold/sdk-Cargo.toml"),
    ),
    (
        "vendor/sdk/src/lib.rs",
        include_str!("../../plugins/sdk/src/lib.rs"),
    ),
];

const README: &str = include_str!("../scaffold/README.md");

/// Writes the project into `dir/NAME` (which must not exist); returns its path.
pub fn new_plugin(dir: &Path, name: &str, lang: Lang) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a plugin name: lowercase letters, digits, - and _, starting with a letter"
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let krate = name.replace('-', "_");
    let (files, label, build) = match lang {
        Lang::TypeScript => (
            TS,
            "TypeScript",
            "```sh\nnpm run setup     # once: the pinned build tools, into vendor/sdk-ts\nnpm run build     # plugin.ts → plugin.wasm (type-checked)\nmanifold plugin check plugin.wasm --config pod=ad10\n```".to_string(),
        ),
        Lang::Rust => (
            RUST,
            "Rust",
            format!("```sh\nrustup target add wasm32-wasip2\ncargo build --release\nmanifold plugin check target/wasm32-wasip2/release/{krate}.wasm --config pod=ad10\n```"),
        ),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &krate)
            .replace("{{lang}}", label)
            .replace("{{build}}", &build)
    };
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    for (rel, text) in files {
        // the SDK's own files are copied as they are; the templates get the name
        let text = if rel.starts_with("vendor/") || *rel == "Cargo.lock" {
            text.to_string()
        } else {
            fill(text)
        };
        write(rel, &text)?;
    }
    write("wit/plugin.wit", WIT)?;
    write("README.md", &fill(README))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_existing_directories_kept() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Caps", "1st", "a b", "../x", "a/b"] {
            assert!(new_plugin(dir.path(), bad, Lang::Rust).is_err(), "{bad}");
        }
        let made = new_plugin(dir.path(), "my-ads", Lang::Rust).unwrap();
        let lib = std::fs::read_to_string(made.join("src/lib.rs")).unwrap();
        assert!(lib.contains("my_ads.wasm") && !lib.contains("{{"), "{lib}");
        assert!(made.join("wit/plugin.wit").exists());
        let again = new_plugin(dir.path(), "my-ads", Lang::TypeScript).unwrap_err();
        assert!(again.contains("already exists"), "{again}");
        let ts = new_plugin(dir.path(), "ts-ads", Lang::TypeScript).unwrap();
        assert!(ts.join("vendor/sdk-ts/src/sdk.ts").exists());
        assert_eq!("typescript".parse::<Lang>(), Ok(Lang::TypeScript));
        assert!("go".parse::<Lang>().is_err());
    }
}
