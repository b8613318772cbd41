//! The apps a job can name: uploads (`PushApp`), and the built-ins, `<app>.wasm` files in
//! the apps folder. An app is read at submission and kept by content hash, so a job keeps
//! the module it started with even if the name moves on, and workers fetch exactly that
//! module by its hash. Modules are saved under `DATA/.mr/apps/<sha256>.wasm`, so a restarted
//! coordinator can still serve them; uploaded names are kept in `DATA/.mr/apps/names.json`
//! (replaced atomically), each pointing to its latest upload.

use crate::error::CoordinatorError;
use mr_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// An uploaded name's entry in `names.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Uploaded {
    sha256: String,
    size_bytes: u64,
    uploaded_at_ms: i64,
}

/// Longest app name accepted; names are file stems, not paths.
const MAX_APP_NAME: usize = 64;

/// Uploaded names, in the saved-modules folder.
const NAMES_FILE: &str = "names.json";

/// An app name is a file stem: 1-64 letters, digits, `_` or `-`.
fn check_name(field: &'static str, name: &str) -> Result<(), CoordinatorError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_APP_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        return Ok(());
    }
    Err(CoordinatorError::InvalidArgument {
        field,
        message: format!(
            "'{}' is not an app name (1-{MAX_APP_NAME} letters, digits, '_' or '-')",
            crate::error::clip(name)
        ),
    })
}

fn info(name: &str, up: &Uploaded) -> pb::AppInfo {
    pb::AppInfo {
        name: name.to_string(),
        sha256: up.sha256.clone(),
        size_bytes: up.size_bytes,
        uploaded: true,
        uploaded_at_ms: up.uploaded_at_ms,
    }
}

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
    /// Uploaded names, as in `names.json`.
    names: Mutex<BTreeMap<String, Uploaded>>,
}

impl AppStore {
    /// `dir` is the apps folder; `saved` where modules are kept by hash across restarts.
    pub fn new(dir: PathBuf, saved: PathBuf) -> Self {
        // An unreadable index is logged and treated as empty: the built-ins still work,
        // and the modules themselves are kept by hash regardless.
        let names = match std::fs::read(saved.join(NAMES_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::error!(%error, file = %saved.join(NAMES_FILE).display(), "unreadable index of uploaded apps; starting without it");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self {
            dir,
            saved,
            modules: Mutex::new(HashMap::new()),
            names: Mutex::new(names),
        }
    }

    /// The app a job names: its latest upload, or else `<name>.wasm` of the apps folder
    /// (which must look like a Wasm module); kept by hash.
    pub fn load(&self, name: &str) -> Result<AppRef, CoordinatorError> {
        check_name("app", name)?;
        if let Some(up) = self.names().get(name).cloned() {
            self.module(&up.sha256)?;
            return Ok(AppRef {
                name: name.to_string(),
                sha256: up.sha256,
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
        let sha256 = hex::encode(Sha256::digest(&bytes));
        // Checked once per content: a job's submission then costs a hash, not a parse.
        if !self.lock().contains_key(&sha256) {
            mr_common::app_interface::check(&bytes).map_err(|message| {
                CoordinatorError::BadApp {
                    app: name.to_string(),
                    message: format!("{} is not an app: {message}", path.display()),
                }
            })?;
        }
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

    /// Accepts an upload: checks the module has the app interface, saves it by hash, then
    /// points `name` to it (durably, before answering).
    pub fn push(&self, name: &str, wasm: Vec<u8>) -> Result<pb::AppInfo, CoordinatorError> {
        check_name("name", name)?;
        mr_common::app_interface::check(&wasm).map_err(|message| CoordinatorError::BadApp {
            app: name.to_string(),
            message: format!("the module is not an app: {message}"),
        })?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        self.save(&sha256, &wasm)?;
        let up = Uploaded {
            sha256: sha256.clone(),
            size_bytes: wasm.len() as u64,
            uploaded_at_ms: crate::state::millis(SystemTime::now()),
        };
        self.lock().entry(sha256).or_insert_with(|| Arc::new(wasm));
        let mut names = self.names();
        let mut next = names.clone();
        next.insert(name.to_string(), up.clone());
        self.write_names(&next)?;
        *names = next;
        tracing::info!(app = name, sha256 = %up.sha256, bytes = up.size_bytes, "app uploaded");
        Ok(info(name, &up))
    }

    /// Forgets an uploaded name; its module stays (jobs refer to it by hash).
    pub fn delete(&self, name: &str) -> Result<pb::AppInfo, CoordinatorError> {
        let mut names = self.names();
        let Some(up) = names.get(name).cloned() else {
            return Err(CoordinatorError::UnknownApp {
                app: name.to_string(),
            });
        };
        let mut next = names.clone();
        next.remove(name);
        self.write_names(&next)?;
        *names = next;
        tracing::info!(app = name, sha256 = %up.sha256, "uploaded app name deleted");
        Ok(info(name, &up))
    }

    /// Uploaded apps by name, then the apps folder's built-ins that no upload shadows.
    pub fn list(&self) -> Vec<pb::AppInfo> {
        let names = self.names().clone();
        let mut apps: Vec<pb::AppInfo> = names.iter().map(|(n, up)| info(n, up)).collect();
        let mut builtins: Vec<pb::AppInfo> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_stem()?.to_str()?.to_string();
                if path.extension()? != "wasm" || names.contains_key(&name) {
                    return None;
                }
                let bytes = std::fs::read(&path).ok()?;
                Some(pb::AppInfo {
                    name,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    size_bytes: bytes.len() as u64,
                    uploaded: false,
                    uploaded_at_ms: 0,
                })
            })
            .collect();
        builtins.sort_by(|a, b| a.name.cmp(&b.name));
        apps.extend(builtins);
        apps
    }

    fn write_names(&self, names: &BTreeMap<String, Uploaded>) -> Result<(), CoordinatorError> {
        let path = self.saved.join(NAMES_FILE);
        let io = |source| CoordinatorError::Io {
            what: format!("saving {}", path.display()),
            source,
        };
        std::fs::create_dir_all(&self.saved).map_err(io)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(names).map_err(|e| io(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.saved)
            .and_then(|dir| dir.sync_all())
            .map_err(io)
    }

    fn names(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Uploaded>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        // The map is only ever inserted into; a panic elsewhere cannot leave it inconsistent.
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }
}
