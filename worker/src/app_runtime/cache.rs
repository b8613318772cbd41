//! Compiled apps on disk (`--cache-dir`): a worker compiles an app once per cache
//! folder, not once per process. Cranelift takes seconds for a CPython component.
//!
//! An entry is `<app sha256>-<module|component>-<engine key>.bin`: the engine key hashes
//! wasmtime's own compatibility hash (its version and every setting that changes the
//! code), so a worker built or configured differently never reads another's entries. An
//! entry's bytes are `MAGIC`, the sha256 of the rest, then what `serialize` wrote.
//! Loading checks that digest before wasmtime sees a byte, so a torn, truncated or
//! damaged entry is removed and the app compiled again, never trusted. Entries are
//! written to a temporary name and renamed into place, so workers sharing the folder
//! (compose's `/data/.mr/cache`) see whole entries or none. The folder is kept under
//! [`MAX_BYTES`] by removing the least recently written entries.
//!
//! Nothing here is needed for correctness: every failure is logged and the app is
//! compiled in memory as without a cache.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use mr_common::app_interface::Kind;
use sha2::{Digest, Sha256};

/// The first bytes of every entry (and its format's version).
const MAGIC: &[u8; 8] = b"mrcode01";

/// The cache folder's size cap: after a write past it, the oldest entries go.
pub const MAX_BYTES: u64 = 4 << 30;

/// A cache folder, for one engine configuration.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

/// `std::hash::Hasher` over sha256: a stable digest of a `Hash` value (std's hashers
/// are not promised to be stable across releases).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

impl DiskCache {
    /// The cache in `dir` (created if missing), or None (logged) if it cannot be used.
    pub fn open(dir: &Path, engine: &wasmtime::Engine) -> Option<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e,
                "cannot create the compile cache folder; compiling apps in memory only");
            return None;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        tracing::info!(dir = %dir.display(), engine = %engine_key, "compile cache");
        Some(Self {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's file for an app.
    pub fn path(&self, sha256: &str, kind: Kind) -> PathBuf {
        let kind = match kind {
            Kind::Module => "module",
            Kind::Component => "component",
        };
        self.dir
            .join(format!("{sha256}-{kind}-{}.bin", self.engine_key))
    }

    /// The serialized code of an app, if a sound entry holds it. A damaged entry is
    /// removed (and logged): the caller compiles again.
    pub fn get(&self, sha256: &str, kind: Kind) -> Option<Vec<u8>> {
        let path = self.path(sha256, kind);
        let mut bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a compile cache entry");
                return None;
            }
        };
        let head = MAGIC.len() + 32;
        let sound = bytes.len() >= head
            && bytes.starts_with(MAGIC)
            && Sha256::digest(&bytes[head..]).as_slice() == &bytes[MAGIC.len()..head];
        if !sound {
            self.discard(sha256, kind, "its checksum does not match its contents");
            return None;
        }
        bytes.drain(..head);
        Some(bytes)
    }

    /// Removes an entry that cannot be used, saying why.
    pub fn discard(&self, sha256: &str, kind: Kind, why: &str) {
        let path = self.path(sha256, kind);
        tracing::warn!(path = %path.display(), why, "discarding a compile cache entry; compiling again");
        let _ = std::fs::remove_file(&path);
    }

    /// Saves an app's serialized code (atomically: a temporary file renamed into place).
    pub fn put(&self, sha256: &str, kind: Kind, code: &[u8]) {
        let path = self.path(sha256, kind);
        let tmp = self.dir.join(format!(
            ".{}.{}.{:x}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id(),
            rand::random::<u32>()
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(code))?;
            file.write_all(code)?;
            std::fs::rename(&tmp, &path)
        })();
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), bytes = code.len(), "compiled app cached");
                self.trim();
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(path = %path.display(), error = %e, "cannot write a compile cache entry");
            }
        }
    }

    /// Removes the oldest entries while the folder holds more than [`MAX_BYTES`].
    fn trim(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = read
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".bin")))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= MAX_BYTES {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}
