//! Files at rest: the data folder is `0700` and its files `0600`; secret files (the HSM PIN file, a
//! database password file) readable by group or others are reported.
//!
//! The binary also sets the process umask to `077` at start (`offline-signer` main), so files that
//! sled creates later (snapshots, new segments) are `0600` from birth; [`tighten_tree`] fixes files
//! left by older builds.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode `0700`, or sets an existing one to `0700`.
///
/// # Errors
/// The I/O error when the folder cannot be created or its mode changed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a folder",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        Err(e) => Err(e),
    }
}

/// Sets every folder under `dir` to `0700` and every file to `0600` (symbolic links are left
/// alone).
///
/// # Errors
/// The first I/O error met.
pub fn tighten_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            tighten_tree(&path)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    Ok(())
}

/// The permission bits granting group or others access to `path`, if any (`None` when the file is
/// private or cannot be read: the reader of the secret reports that).
pub fn exposed_mode(path: &Path) -> Option<u32> {
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_folders_and_files_become_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data/nested");
        private_dir(&dir).expect("created");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("db");
        fs::write(&file, b"x").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(exposed_mode(&file), Some(0o644));
        tighten_tree(&dir).expect("tightened");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(exposed_mode(&file), None);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("tightened");
        assert_eq!(mode(&dir), 0o700);
    }
}
