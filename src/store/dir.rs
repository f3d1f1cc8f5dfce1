//! The data directory: created with mode 0700 when missing, checked to be a writable directory.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::StoreError;

/// Name (followed by `-<pid>`) of the probe file created and removed to check that the data
/// directory is writable.
const PROBE_NAME: &str = ".nanopeer-write-probe";

/// Makes sure `dir` is a writable directory, creating it (and missing parents) with mode 0700.
///
/// An existing directory keeps its permissions. Writability is checked by creating and removing
/// a probe file, so the answer is the kernel's (read-only mounts, ACLs, full inode tables).
pub fn ensure_data_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::DataDirNotDirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| match source.kind() {
                    // A path component is a regular file.
                    ErrorKind::NotADirectory | ErrorKind::AlreadyExists => {
                        StoreError::DataDirNotDirectory {
                            path: dir.to_path_buf(),
                        }
                    }
                    _ => StoreError::DataDirCreate {
                        path: dir.to_path_buf(),
                        source,
                    },
                })?;
        }
        Err(e) if e.kind() == ErrorKind::NotADirectory => {
            return Err(StoreError::DataDirNotDirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(StoreError::DataDirAccess {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let probe = dir.join(format!("{PROBE_NAME}-{}", std::process::id()));
    let not_writable = |source| StoreError::DataDirNotWritable {
        path: dir.to_path_buf(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(not_writable)?;
    match fs::remove_file(&probe) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(not_writable(e)),
    }
}
