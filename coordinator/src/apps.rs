//! The apps a job can name: `<app>.wasm` files in the apps folder, read at submission and
//! kept by content hash, so a job keeps the module it started with even if the file changes,
//! and workers fetch exactly that module by its hash. Modules are also saved under
//! `DATA/.mr/apps/<sha256>.wasm`, so a restarted coordinator can still serve them.

use crate::error::CoordinatorError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Longest app name accepted; names are file stems, not paths.
const MAX_APP_NAME: usize = 64;

/// An app as a job refers to it.
#[derive(Clone, Debug)]
pub struct AppRef {
    pub name: String,
    /// Hex SHA-256 of the module bytes.
    pub sha256: String,
}

/// The apps folder and every module a job has used so far.
pub struct AppStore {
    dir: PathBuf,
    saved: PathBuf,
    modules: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl AppStore {
    /// `dir` is the apps folder; `saved` where modules are kept by hash across restarts.
    pub fn new(dir: PathBuf, saved: PathBuf) -> Self {
        Self {
            dir,
            saved,
            modules: Mutex::new(HashMap::new()),
        }
    }

    /// Reads `<name>.wasm`, checks it looks like a Wasm module and keeps it by hash.
    pub fn load(&self, name: &str) -> Result<AppRef, CoordinatorError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_APP_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(CoordinatorError::InvalidArgument {
                field: "app",
                message: format!(
                    "'{}' is not an app name (1-{MAX_APP_NAME} letters, digits, '_' or '-')",
                    crate::error::clip(name)
                ),
            });
        }
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CoordinatorError::UnknownApp {
                    app: name.to_string(),
                });
            }
            Err(source) => {
                return Err(CoordinatorError::Io {
                    what: format!("reading {}", path.display()),
                    source,
                });
            }
        };
        if !bytes.starts_with(b"\0asm") {
            return Err(CoordinatorError::BadApp {
                app: name.to_string(),
                message: format!("{} is not a WebAssembly module", path.display()),
            });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        self.save(&sha256, &bytes)?;
        self.lock()
            .entry(sha256.clone())
            .or_insert_with(|| Arc::new(bytes));
        Ok(AppRef {
            name: name.to_string(),
            sha256,
        })
    }

    fn saved_path(&self, sha256: &str) -> PathBuf {
        self.saved.join(format!("{sha256}.wasm"))
    }

    fn save(&self, sha256: &str, bytes: &[u8]) -> Result<(), CoordinatorError> {
        let path = self.saved_path(sha256);
        if path.exists() {
            return Ok(());
        }
        let io = |source| CoordinatorError::Io {
            what: format!("saving the module to {}", path.display()),
            source,
        };
        std::fs::create_dir_all(&self.saved).map_err(io)?;
        let tmp = path.with_extension("wasm.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The module with this hash, if a job has used it (in this process or before a restart).
    pub fn module(&self, sha256: &str) -> Result<Arc<Vec<u8>>, CoordinatorError> {
        let unknown = || CoordinatorError::UnknownModule {
            sha256: sha256.to_string(),
        };
        if let Some(module) = self.lock().get(sha256) {
            return Ok(module.clone());
        }
        // The hash becomes a file name: only a well-formed one may.
        let well_formed = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err(unknown());
        }
        let bytes = std::fs::read(self.saved_path(sha256)).map_err(|_| unknown())?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(unknown());
        }
        let module = Arc::new(bytes);
        self.lock().insert(sha256.to_string(), module.clone());
        Ok(module)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        // The map is only ever inserted into; a panic elsewhere cannot leave it inconsistent.
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }
}
