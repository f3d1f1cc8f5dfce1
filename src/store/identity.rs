//! The node ID key (§4.5): `<data>/node_id_private.key`, the 32-byte private key as 64 hex
//! digits and a newline, as nano-node writes it. Created on first start with mode 0600.
//!
//! A key file open to group or others is refused, not silently fixed: the key may already have
//! been copied, and whoever holds it can impersonate this node in handshakes (peers then drop one
//! of the two as a duplicate node ID). The operator decides: `chmod 600` to keep the identity, or
//! delete the file for a new one. The error says both.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{StoreError, ensure_data_dir};
use crate::crypto::NodeSecret;

/// File name of the node ID key in the data directory.
pub const KEY_FILE_NAME: &str = "node_id_private.key";

/// Temporary file the key is written to before it is renamed into place.
const TMP_FILE_NAME: &str = "node_id_private.key.tmp";

/// Longest key file accepted: 64 hex digits with generous surrounding whitespace.
const MAX_FILE_LEN: u64 = 256;

/// The node ID key and where it came from.
#[derive(Debug)]
pub struct NodeKey {
    /// The node ID private key: the file's 64 hex digits, or the key just generated.
    pub secret: NodeSecret,
    /// True if the key file did not exist and was created by this call.
    pub created: bool,
    /// `<dir>/node_id_private.key` ([`KEY_FILE_NAME`]), read or, with `created`, written.
    pub path: PathBuf,
}

/// Loads `<dir>/node_id_private.key`, or creates it with a fresh key from `rng` if it is missing.
///
/// The data directory is created (0700) if needed. A new key is written to a temporary file
/// created with mode 0600, synced, renamed into place, and the directory is synced, so a crash
/// leaves either no key file or a complete one. An existing file must be a regular file, not open
/// to group or others (mode & 0o077 == 0), and hold exactly 64 hex digits (either case) with
/// optional surrounding whitespace.
pub fn load_or_create_node_key(
    dir: &Path,
    rng: &mut impl CryptoRng,
) -> Result<NodeKey, StoreError> {
    ensure_data_dir(dir)?;
    let path = dir.join(KEY_FILE_NAME);
    match File::open(&path) {
        Ok(file) => {
            let secret = read_key(&path, file)?;
            Ok(NodeKey {
                secret,
                created: false,
                path,
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut *bytes);
            write_key(dir, &path, &bytes)?;
            Ok(NodeKey {
                secret: NodeSecret::from_zeroizing(bytes),
                created: true,
                path,
            })
        }
        Err(source) => Err(StoreError::KeyRead { path, source }),
    }
}

fn read_key(path: &Path, file: File) -> Result<NodeSecret, StoreError> {
    let read_err = |source| StoreError::KeyRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(StoreError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let malformed = |reason| StoreError::KeyMalformed {
        path: path.to_path_buf(),
        reason,
    };
    if meta.len() > MAX_FILE_LEN {
        return Err(malformed("file too long"));
    }
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN as usize + 1));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(malformed("file too long"));
    }
    let hex = text.trim_ascii();
    if hex.is_empty() {
        return Err(malformed("file is empty"));
    }
    if hex.len() != 64 {
        return Err(malformed("expected 64 hex digits"));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex, &mut *bytes).map_err(|_| malformed("not hexadecimal"))?;
    Ok(NodeSecret::from_zeroizing(bytes))
}

fn write_key(dir: &Path, path: &Path, key: &[u8; 32]) -> Result<(), StoreError> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let tmp = dir.join(TMP_FILE_NAME);
    let tmp_err = |source| StoreError::KeyWrite {
        path: tmp.clone(),
        source,
    };
    let mut text = Zeroizing::new([0u8; 65]);
    for (i, b) in key.iter().enumerate() {
        text[2 * i] = DIGITS[usize::from(b >> 4)];
        text[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    text[64] = b'\n';
    // A leftover temporary file from a crash may have any mode: remove it so that the mode below
    // applies (it is only honoured when the file is created).
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => return Err(tmp_err(source)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(tmp_err)?;
    let written = file
        .write_all(&text[..])
        .and_then(|()| file.sync_all())
        .map_err(tmp_err);
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::KeyWrite {
            path: path.to_path_buf(),
            source,
        });
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::KeyWrite {
            path: dir.to_path_buf(),
            source,
        })
}
