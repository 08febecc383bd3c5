//! The proxy's private state directory: plugin uploads, compiled artifacts (deserialized as
//! trusted native code) and the upgrade socket (which hands listeners over). Anyone who can
//! write there can run code in the proxy, so the directory is the proxy user's alone:
//! created 0700, refused if another user owns it or anyone else may write to it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `$XDG_STATE_HOME/manifold`, else `~/.local/state/manifold`, else `./manifold-state`:
/// never a shared temp directory.
pub fn default_root() -> PathBuf {
    let xdg = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    match (xdg, home) {
        (Some(x), _) => PathBuf::from(x).join("manifold"),
        (None, Some(h)) => PathBuf::from(h).join(".local/state/manifold"),
        (None, None) => PathBuf::from("manifold-state"),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (0700) if missing; refuses one another user owns, that others may write to
/// or that is a symlink.
pub fn ensure_private(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    trusted(dir, &m)
}

/// A file in the state directory may be trusted: a regular file the proxy's user owns and
/// only it may write.
pub fn trusted_file(path: &Path) -> Result<(), String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !m.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    trusted(path, &m)
}

fn trusted(path: &Path, m: &std::fs::Metadata) -> Result<(), String> {
    if m.uid() != euid() {
        return Err(format!(
            "{} belongs to uid {}, not the proxy's user ({}): refusing it",
            path.display(),
            m.uid(),
            euid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} may be written by other users (mode {:o}): refusing it (chmod go-w)",
            path.display(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_directories_and_refuses_shared_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // a directory anyone may write to (like /tmp/manifold-plugins made by someone else)
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private(&dir).unwrap_err();
        assert!(e.contains("written by other users"), "{e}");
        // a symlink planted in place of the directory
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(ensure_private(&link)
            .unwrap_err()
            .contains("not a directory"));
        // files: only private regular files
        let f = root.path().join("x.cwasm");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        trusted_file(&f).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(trusted_file(&f).is_err());
        assert!(trusted_file(root.path()).is_err());
    }
}
