//! The shared data folder: its layout, and the rule that nothing outside it is ever read.
//!
//! ```text
//! DATA/
//!   input/...                       inputs (any layout; jobs name them relative to DATA)
//!   jobs/<job_id>/mr-X-Y            intermediate of map task X for reduce partition Y
//!   jobs/<job_id>/mr-out-Y          output of reduce partition Y
//!   jobs/<job_id>/.<name>.a<N>.tmp  a file being written by attempt N; renamed into place
//!                                   by the coordinator only when attempt N is accepted
//!   .mr/journal                     the coordinator's durable state
//!   .mr/apps/<sha256>.wasm          every app module a job used, by content hash
//!   .mr/cache/                      the workers' compiled apps (their default --cache-dir)
//! ```
//!
//! User-supplied paths are checked twice: lexically (relative, no `..`) so a bad request is
//! refused before touching the disk, then after resolving symlinks, so a link that leads out
//! of the folder is refused too.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused or could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The data folder itself is missing or unusable.
    #[error("data folder {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An absolute path, or one with `..`, where a path relative to the data folder is required.
    #[error("{field}: '{path}' must be relative to the data folder and must not contain '..'")]
    NotRelative { field: String, path: String },
    /// The path (after following symlinks) leads outside the data folder.
    #[error("{field}: '{path}' leads outside the data folder")]
    Escapes { field: String, path: String },
    /// The pattern is not a valid glob.
    #[error("{field}: '{path}' is not a valid glob: {message}")]
    BadGlob {
        field: String,
        path: String,
        message: String,
    },
    /// Nothing matched the path or glob.
    #[error("{field}: '{path}' matches no file in the data folder")]
    NoMatch { field: String, path: String },
    /// The glob matched only entries it had to skip (see [`DataDir::expand_inputs`]).
    #[error(
        "{field}: '{path}' matches no usable file: skipped {skipped} (names that are not UTF-8, dangling symbolic links, unreadable folders)"
    )]
    NoUsableMatch {
        field: String,
        path: String,
        skipped: usize,
    },
    /// The path names a symbolic link whose target is missing (or a loop of links).
    #[error("{field}: '{path}' is a symbolic link to a missing file")]
    DanglingLink { field: String, path: String },
    /// The path cannot name a file: a NUL byte, too long, a name too long.
    #[error("{field}: '{path}' {reason}")]
    Unusable {
        field: String,
        path: String,
        reason: String,
    },
    /// The path exists but is not a regular file.
    #[error("{field}: '{path}' is not a regular file")]
    NotAFile { field: String, path: String },
    /// Reading the file's metadata failed.
    #[error("{field}: '{path}': {source}")]
    Io {
        field: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The name of the coordinator's state folder inside the data folder (see
/// [`DataDir::state_dir`]).
pub const STATE_DIR: &str = ".mr";
/// The coordinator's journal, inside [`STATE_DIR`].
pub const JOURNAL_FILE: &str = "journal";
/// The folder of every job's folder, inside the data folder.
pub const JOBS_DIR: &str = "jobs";

/// An input file resolved inside the data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to the data folder, with `/` separators (the document's name for apps).
    pub relative: String,
    /// Size in bytes when it was resolved.
    pub size: u64,
}

/// The shared data folder, canonicalized once.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens (creating if needed) the data folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PathError> {
        let path = path.as_ref();
        let wrap = |source| PathError::DataDir {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(wrap)?;
        let root = path.canonicalize().map_err(wrap)?;
        Ok(Self { root })
    }

    /// The canonical absolute path of the folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a path relative to the data folder for reading, refusing anything that leads
    /// outside of it. `field` names the request field for error messages.
    pub fn resolve(&self, field: &str, relative: &str) -> Result<PathBuf, PathError> {
        check_relative(field, relative)?;
        let joined = self.root.join(relative);
        let canonical = joined.canonicalize().map_err(|source| {
            let is_link = joined.symlink_metadata().is_ok_and(|m| m.is_symlink());
            let field = field.to_string();
            let path = relative.to_string();
            match source.raw_os_error() {
                // A link to nothing, or a loop of links.
                Some(libc::ENOENT | libc::ELOOP) if is_link => {
                    PathError::DanglingLink { field, path }
                }
                Some(libc::ENOENT | libc::ENOTDIR) => PathError::NoMatch { field, path },
                Some(libc::ELOOP) => PathError::DanglingLink { field, path },
                Some(libc::ENAMETOOLONG) => PathError::Unusable {
                    field,
                    path,
                    reason: "is too long for the file system".into(),
                },
                _ => PathError::Io {
                    field,
                    path,
                    source,
                },
            }
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(PathError::Escapes {
                field: field.to_string(),
                path: relative.to_string(),
            });
        }
        Ok(canonical)
    }

    /// Expands a job's inputs (paths or globs relative to the folder) into regular files,
    /// sorted and without duplicates. Every pattern must match at least one file.
    ///
    /// A glob is walked one path component at a time (each component a [`glob::Pattern`],
    /// `**` any number of folders). What a glob meets but cannot use is skipped with a
    /// warning, never fatal, as long as something else matches: names that are not UTF-8
    /// (a job names its files in UTF-8 strings), dangling or looping symbolic links, folders
    /// that cannot be listed. A glob matching only such entries is [`PathError::NoUsableMatch`].
    /// A symbolic link leading out of the folder is refused, in a glob too.
    pub fn expand_inputs(&self, patterns: &[String]) -> Result<Vec<InputFile>, PathError> {
        let mut files = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            let field = format!("inputs[{i}]");
            check_relative(&field, pattern)?;
            let before = files.len();
            if is_glob(pattern) {
                let mut walk = GlobWalk::new(self, &field, pattern)?;
                walk.run(&mut files)?;
                let skipped = walk.skipped;
                if files.len() == before && skipped > 0 {
                    return Err(PathError::NoUsableMatch {
                        field,
                        path: pattern.clone(),
                        skipped,
                    });
                }
            } else {
                let resolved = self.resolve(&field, pattern)?;
                if !resolved.is_file() {
                    return Err(PathError::NotAFile {
                        field,
                        path: pattern.clone(),
                    });
                }
                let relative = normalize(pattern);
                files.push(self.input_file(&field, relative, &resolved)?);
            }
            if files.len() == before {
                return Err(PathError::NoMatch {
                    field,
                    path: pattern.clone(),
                });
            }
        }
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        files.dedup_by(|a, b| a.relative == b.relative);
        Ok(files)
    }

    fn input_file(
        &self,
        field: &str,
        relative: String,
        resolved: &Path,
    ) -> Result<InputFile, PathError> {
        let size = std::fs::metadata(resolved)
            .map_err(|source| PathError::Io {
                field: field.to_string(),
                path: relative.clone(),
                source,
            })?
            .len();
        Ok(InputFile { relative, size })
    }

    /// `.mr/`: the coordinator's own state (journal, app modules). Hidden, so no input glob
    /// matches it.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// `.mr/cache/`: the workers' compiled apps, shared by the workers of the folder
    /// unless a worker is given its own `--cache-dir`.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.state_dir().join("cache")
    }

    /// Creates `jobs/` if need be and marks it as the top of unrelated trees (ext2/3/4's
    /// Orlov hint, `chattr +T`; a no-op elsewhere), so each job's folder and files get a
    /// block group of their own instead of the one where an earlier job's cleanup just freed
    /// thousands of inodes: ext4 without a journal scans past every recently freed inode,
    /// one by one, for each file it creates.
    pub fn prepare_jobs_dir(&self) -> std::io::Result<()> {
        let jobs = self.root.join(JOBS_DIR);
        std::fs::create_dir_all(&jobs)?;
        mark_top_dir(&jobs)
    }

    /// `jobs/<job_id>` (absolute).
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_dir_relative(job_id))
    }

    /// Final path of map task `map`'s intermediate for reduce partition `partition`.
    pub fn intermediate(&self, job_id: &str, map: u32, partition: u32) -> PathBuf {
        self.job_dir(job_id).join(intermediate_name(map, partition))
    }

    /// Final path of reduce partition `partition`'s output.
    pub fn output(&self, job_id: &str, partition: u32) -> PathBuf {
        self.job_dir(job_id).join(output_name(partition))
    }

    /// Where attempt `attempt` of reduce `partition` writes sorted run `run` of a multi-pass
    /// merge: a hidden, attempt-unique temp name in the job folder that is never renamed; the
    /// attempt removes it once merged (and the coordinator's sweep of an ended job's folder
    /// takes any a killed worker left).
    pub fn merge_run_tmp(&self, job_id: &str, partition: u32, run: usize, attempt: u64) -> PathBuf {
        Self::attempt_tmp(
            &self
                .job_dir(job_id)
                .join(format!("mr-run-{partition}-{run}")),
            attempt,
        )
    }

    /// `path` (under the folder) as an object key: relative, `/`-separated, e.g.
    /// `jobs/<id>/mr-0-1`; the same layout as the folder's, under an S3 prefix.
    pub fn key_of(&self, path: &Path) -> Result<String, PathError> {
        let shown = || path.display().to_string();
        let relative = path
            .strip_prefix(&self.root)
            .map_err(|_| PathError::Escapes {
                field: "key".into(),
                path: shown(),
            })?;
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        parts
            .map(|p| p.join("/"))
            .ok_or_else(|| PathError::NotRelative {
                field: "key".into(),
                path: shown(),
            })
    }

    /// Where attempt `attempt` writes the file that becomes `final_path` once it is accepted.
    pub fn attempt_tmp(final_path: &Path, attempt: u64) -> PathBuf {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        final_path.with_file_name(format!(".{name}.a{attempt}.tmp"))
    }
}

/// One component of a glob, as [`GlobWalk`] matches it.
enum GlobPart {
    /// A name without wildcards.
    Literal(String),
    /// A name with wildcards, matched against each entry of a folder.
    Pattern(glob::Pattern),
    /// `**`: this folder and every folder below it (not through symbolic links).
    AnyDepth,
}

/// Expands one glob by listing only the folders its components lead to. Entries it cannot
/// use are counted in `skipped` and logged once, never a panic nor an error of the whole
/// glob (`glob::glob` panics on a name that is not UTF-8, anywhere in a listed folder).
struct GlobWalk<'a> {
    data: &'a DataDir,
    field: &'a str,
    pattern: &'a str,
    parts: Vec<GlobPart>,
    /// Entries skipped: not UTF-8, dangling links, unlistable folders.
    skipped: usize,
    /// The first skipped entry and why, for the log.
    first_skipped: Option<String>,
}

impl<'a> GlobWalk<'a> {
    fn new(data: &'a DataDir, field: &'a str, pattern: &'a str) -> Result<Self, PathError> {
        let mut parts = Vec::new();
        for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
            parts.push(if component == "**" {
                GlobPart::AnyDepth
            } else if is_glob(component) {
                GlobPart::Pattern(glob::Pattern::new(component).map_err(|e| {
                    PathError::BadGlob {
                        field: field.to_string(),
                        path: pattern.to_string(),
                        message: e.msg.to_string(),
                    }
                })?)
            } else {
                GlobPart::Literal(component.to_string())
            });
        }
        // `dir/**` means every file below `dir`.
        if matches!(parts.last(), Some(GlobPart::AnyDepth)) {
            parts.push(GlobPart::Pattern(glob::Pattern::new("*").map_err(|e| {
                PathError::BadGlob {
                    field: field.to_string(),
                    path: pattern.to_string(),
                    message: e.msg.to_string(),
                }
            })?));
        }
        Ok(Self {
            data,
            field,
            pattern,
            parts,
            skipped: 0,
            first_skipped: None,
        })
    }

    fn run(&mut self, files: &mut Vec<InputFile>) -> Result<(), PathError> {
        let root = self.data.root.clone();
        self.visit(&root, &mut Vec::new(), 0, 0, files)?;
        if let Some(first) = &self.first_skipped {
            tracing::warn!(
                field = self.field,
                pattern = self.pattern,
                skipped = self.skipped,
                first = %first,
                "input glob skipped entries it cannot use"
            );
        }
        Ok(())
    }

    fn skip(&mut self, what: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.first_skipped.is_none() {
            self.first_skipped = Some(what());
        }
    }

    /// Matches `parts[part..]` below `dir` (whose name relative to the data folder is `rel`).
    fn visit(
        &mut self,
        dir: &Path,
        rel: &mut Vec<String>,
        part: usize,
        depth: usize,
        files: &mut Vec<InputFile>,
    ) -> Result<(), PathError> {
        let last = part + 1 == self.parts.len();
        match &self.parts[part] {
            GlobPart::Literal(name) => {
                let name = name.clone();
                self.step(dir, rel, name, part, depth, last, files)
            }
            GlobPart::Pattern(pattern) => {
                let pattern = pattern.clone();
                // As in a shell: a dot file is matched only by a pattern that starts with a
                // literal dot (`*.hidden` does not select `.hidden`).
                let dots = pattern.as_str().starts_with('.');
                for name in self.list(dir, rel) {
                    if (dots || !name.starts_with('.'))
                        && pattern.matches_with(&name, MATCH_OPTIONS)
                    {
                        self.step(dir, rel, name, part, depth, last, files)?;
                    }
                }
                Ok(())
            }
            GlobPart::AnyDepth => {
                // Zero folders, then one more level, through real folders only (no loops).
                self.visit(dir, rel, part + 1, depth, files)?;
                if depth >= MAX_GLOB_DEPTH {
                    return Ok(());
                }
                for name in self.list(dir, rel) {
                    let child = dir.join(&name);
                    if name.starts_with('.') || !child.symlink_metadata().is_ok_and(|m| m.is_dir())
                    {
                        continue;
                    }
                    rel.push(name);
                    let result = self.visit(&child, rel, part, depth + 1, files);
                    rel.pop();
                    result?;
                }
                Ok(())
            }
        }
    }

    /// Goes on with entry `name` of `dir`: a candidate file after the last component, else
    /// the next folder to match the rest in.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        dir: &Path,
        rel: &mut Vec<String>,
        name: String,
        part: usize,
        depth: usize,
        last: bool,
        files: &mut Vec<InputFile>,
    ) -> Result<(), PathError> {
        let path = dir.join(&name);
        rel.push(name);
        let result = if last {
            self.candidate(rel.join("/"), files)
        } else if path.is_dir() {
            self.visit(&path, rel, part + 1, depth, files)
        } else {
            Ok(())
        };
        rel.pop();
        result
    }

    /// The UTF-8 names in `dir`, sorted; others are skipped. An unlistable folder is skipped
    /// too (a missing one is simply not a match).
    fn list(&mut self, dir: &Path, rel: &[String]) -> Vec<String> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Vec::new(),
            Err(e) => {
                self.skip(|| format!("folder '{}': {e}", rel.join("/")));
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = match entry {
                Ok(entry) => entry.file_name(),
                Err(e) => {
                    self.skip(|| format!("in folder '{}': {e}", rel.join("/")));
                    continue;
                }
            };
            match name.into_string() {
                Ok(name) => names.push(name),
                Err(name) => self.skip(|| {
                    format!(
                        "'{}/{}': the name is not UTF-8",
                        rel.join("/"),
                        name.to_string_lossy()
                    )
                }),
            }
        }
        names.sort();
        names
    }

    /// Adds the matched entry if it is a regular file inside the data folder.
    fn candidate(&mut self, relative: String, files: &mut Vec<InputFile>) -> Result<(), PathError> {
        let resolved = match self.data.resolve(self.field, &relative) {
            Ok(resolved) => resolved,
            Err(PathError::DanglingLink { .. }) => {
                self.skip(|| format!("'{relative}': a symbolic link to a missing file"));
                return Ok(());
            }
            Err(PathError::Unusable { reason, .. }) => {
                self.skip(|| format!("'{relative}': {reason}"));
                return Ok(());
            }
            // Gone since it was listed, or a literal last component that is not there.
            Err(PathError::NoMatch { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if resolved.is_file() {
            files.push(self.data.input_file(self.field, relative, &resolved)?);
        }
        Ok(())
    }
}

/// How a glob component matches a name.
const MATCH_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    // Dot files are temp files and hidden state, never inputs by accident.
    require_literal_leading_dot: true,
};

/// Sets FS_TOPDIR_FL on a directory where the file system knows the flag (it only steers
/// where new inodes go, so "not supported" is not an error).
fn mark_top_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    /// `FS_TOPDIR_FL` of linux/fs.h (not in the libc crate).
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let file = std::fs::File::open(dir)?;
    let fd = file.as_raw_fd();
    let mut flags: libc::c_int = 0;
    // SAFETY: both ioctls read or write one int through a pointer to a live local, on an
    // fd that `file` keeps open for the duration.
    let done = unsafe {
        libc::ioctl(fd, libc::FS_IOC_GETFLAGS as _, &mut flags) == 0 && {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS as _, &flags) == 0
        }
    };
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        _ if done => Ok(()),
        Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL) => Ok(()),
        _ => Err(error),
    }
}

/// `jobs/<job_id>` relative to the data folder.
pub fn job_dir_relative(job_id: &str) -> String {
    format!("jobs/{job_id}")
}

/// `mr-X-Y`: map task X's intermediate for reduce partition Y.
pub fn intermediate_name(map: u32, partition: u32) -> String {
    format!("mr-{map}-{partition}")
}

/// `mr-out-Y`: reduce partition Y's output.
pub fn output_name(partition: u32) -> String {
    format!("mr-out-{partition}")
}

/// `jobs/<job_id>/mr-out-Y` relative to the data folder, as listed in a job's outputs.
pub fn output_relative(job_id: &str, partition: u32) -> String {
    format!("{}/{}", job_dir_relative(job_id), output_name(partition))
}

/// [`DataDir::expand_inputs`] over object keys (S3 storage), with the same rules: paths
/// relative and without `..`, a glob matched with the same options (`*` stays within a
/// `/` segment, `**` spans them, hidden names only when named), every pattern matching
/// something, sorted without duplicates. `list(prefix)` gives every key that starts with
/// `prefix` and its size; `size(key)` one key's size, None if it is missing. A glob lists
/// only below its literal head (`input/*.txt` lists `input/`).
pub fn expand_keys<E: From<PathError>>(
    patterns: &[String],
    mut list: impl FnMut(&str) -> Result<Vec<(String, u64)>, E>,
    mut size: impl FnMut(&str) -> Result<Option<u64>, E>,
) -> Result<Vec<InputFile>, E> {
    let mut files = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format!("inputs[{i}]");
        check_relative(&field, pattern)?;
        let key = normalize(pattern);
        let before = files.len();
        if is_glob(&key) {
            let compiled = glob::Pattern::new(&key).map_err(|e| PathError::BadGlob {
                field: field.clone(),
                path: pattern.clone(),
                message: e.msg.to_string(),
            })?;
            let wild = key.find(['*', '?', '[']).unwrap_or(key.len());
            let head = key[..wild].rfind('/').map_or("", |at| &key[..=at]);
            for (found, bytes) in list(head)? {
                if compiled.matches_with(&found, MATCH_OPTIONS) {
                    files.push(InputFile {
                        relative: found,
                        size: bytes,
                    });
                }
            }
        } else if let Some(bytes) = size(&key)? {
            files.push(InputFile {
                relative: key,
                size: bytes,
            });
        }
        if files.len() == before {
            return Err(PathError::NoMatch {
                field,
                path: pattern.clone(),
            }
            .into());
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    files.dedup_by(|a, b| a.relative == b.relative);
    Ok(files)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Longest input path or glob accepted, in bytes (well below Linux's 4096-byte `PATH_MAX`,
/// which also counts the data folder's own path).
pub const MAX_PATH_BYTES: usize = 2048;

/// Longest file or folder name accepted in an input, in bytes (`NAME_MAX` of Linux file
/// systems).
pub const MAX_NAME_BYTES: usize = 255;

/// Deepest a `**` descends below where it starts.
const MAX_GLOB_DEPTH: usize = 64;

fn check_relative(field: &str, path: &str) -> Result<(), PathError> {
    let unusable = |reason: String| PathError::Unusable {
        field: field.to_string(),
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(unusable("contains a NUL byte".into()));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(unusable(format!(
            "is {} bytes long, more than {MAX_PATH_BYTES}",
            path.len()
        )));
    }
    if let Some(name) = path.split('/').find(|c| c.len() > MAX_NAME_BYTES) {
        return Err(unusable(format!(
            "has a {}-byte name, more than {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(PathError::NotRelative {
            field: field.to_string(),
            path: path.to_string(),
        })
    }
}

/// `./input//a.txt` -> `input/a.txt`, so one file always has one name.
fn normalize(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs folder carries the Orlov top-directory hint where the file system has
    /// inode flags at all (ext4 here; tmpfs has none, and then there is nothing to check).
    #[test]
    fn the_jobs_folder_is_marked_as_a_top_directory() {
        use std::os::fd::AsRawFd;
        let (_tmp, data) = setup();
        data.prepare_jobs_dir().expect("prepare");
        data.prepare_jobs_dir().expect("prepare again");
        let jobs = std::fs::File::open(data.root().join("jobs")).expect("open jobs");
        let mut flags: libc::c_int = 0;
        // SAFETY: reads one int into a live local, on an open fd.
        let got = unsafe { libc::ioctl(jobs.as_raw_fd(), libc::FS_IOC_GETFLAGS as _, &mut flags) };
        if got != 0 {
            eprintln!(
                "no inode flags on this file system: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
        assert_ne!(
            flags & 0x0002_0000,
            0,
            "FS_TOPDIR_FL set (flags {flags:#x})"
        );
    }

    fn setup() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(tmp.path().join("data")).expect("open");
        std::fs::create_dir_all(data.root().join("input")).expect("mkdir");
        for name in ["a.txt", "b.txt", ".hidden.txt"] {
            std::fs::write(data.root().join("input").join(name), name).expect("write");
        }
        std::fs::write(tmp.path().join("secret"), "secret").expect("write");
        (tmp, data)
    }

    #[test]
    fn globs_expand_to_sorted_files_without_dot_files() {
        let (_tmp, data) = setup();
        let files = data
            .expand_inputs(&["input/*.txt".into(), "./input/a.txt".into()])
            .expect("expand");
        let names: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, ["input/a.txt", "input/b.txt"]);
        assert_eq!(files[0].size, 5);
        // A wildcard before a literal dot does not reach a dot file (the fuzzer's find);
        // a pattern that starts with a dot does.
        let err = data
            .expand_inputs(&["input/*.hidden.txt".into()])
            .expect_err("only a dot file would match");
        assert!(err.to_string().contains("inputs[0]"), "{err}");
        let files = data
            .expand_inputs(&["input/.hidden*".into()])
            .expect("expand");
        assert_eq!(files[0].relative, "input/.hidden.txt");
    }

    #[test]
    fn parent_and_absolute_paths_are_refused() {
        let (_tmp, data) = setup();
        for bad in ["../secret", "input/../../secret", "/etc/passwd", ""] {
            let err = data.expand_inputs(&[bad.into()]).expect_err(bad);
            assert!(matches!(err, PathError::NotRelative { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("inputs[0]"), "{err}");
        }
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let (tmp, data) = setup();
        std::os::unix::fs::symlink(tmp.path().join("secret"), data.root().join("input/link"))
            .expect("symlink");
        let err = data
            .expand_inputs(&["input/link".into()])
            .expect_err("link");
        assert!(matches!(err, PathError::Escapes { .. }), "{err}");
        let err = data.expand_inputs(&["input/l*".into()]).expect_err("glob");
        assert!(matches!(err, PathError::Escapes { .. }), "{err}");
    }

    #[test]
    fn empty_matches_and_directories_are_errors() {
        let (_tmp, data) = setup();
        let err = data
            .expand_inputs(&["input/*.csv".into()])
            .expect_err("none");
        assert!(matches!(err, PathError::NoMatch { .. }), "{err}");
        let err = data.expand_inputs(&["input".into()]).expect_err("dir");
        assert!(matches!(err, PathError::NotAFile { .. }), "{err}");
        let err = data
            .expand_inputs(&["input/nope.txt".into()])
            .expect_err("missing");
        assert!(matches!(err, PathError::NoMatch { .. }), "{err}");
    }

    #[test]
    fn names_that_are_not_utf8_are_skipped_not_fatal() {
        use std::os::unix::ffi::OsStrExt;
        let (_tmp, data) = setup();
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff.txt");
        std::fs::write(data.root().join("input").join(odd), "odd").expect("write");
        std::fs::create_dir_all(data.root().join("input/sub")).expect("mkdir");
        std::fs::write(data.root().join("input/sub/c.txt"), "c").expect("write");
        std::fs::write(data.root().join("input/sub").join(odd), "odd").expect("write");
        let files = data
            .expand_inputs(&["input/*.txt".into(), "input/**".into()])
            .expect("expand");
        let names: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, ["input/a.txt", "input/b.txt", "input/sub/c.txt"]);
        let err = data.expand_inputs(&["input/odd*".into()]).expect_err("odd");
        assert!(
            matches!(err, PathError::NoUsableMatch { skipped: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn dangling_links_are_skipped_in_globs_and_named_when_named() {
        let (_tmp, data) = setup();
        let input = data.root().join("input");
        std::os::unix::fs::symlink(input.join("missing"), input.join("dangling.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(input.join("loop.txt"), input.join("loop.txt"))
            .expect("symlink");
        let files = data.expand_inputs(&["input/*.txt".into()]).expect("glob");
        assert_eq!(files.len(), 2);
        for named in ["input/dangling.txt", "input/loop.txt"] {
            let err = data.expand_inputs(&[named.into()]).expect_err(named);
            assert!(matches!(err, PathError::DanglingLink { .. }), "{err}");
        }
        let err = data.expand_inputs(&["input/d*".into()]).expect_err("only");
        assert!(matches!(err, PathError::NoUsableMatch { .. }), "{err}");
    }

    #[test]
    fn nul_bytes_and_overlong_paths_are_refused_before_the_disk() {
        let (_tmp, data) = setup();
        let long_name = format!("input/{}", "n".repeat(MAX_NAME_BYTES + 1));
        let long_path = "input/".repeat(1000);
        for bad in ["input/a\0.txt", "input/*\0", &long_name, &long_path] {
            let err = data.expand_inputs(&[bad.into()]).expect_err(bad);
            assert!(matches!(err, PathError::Unusable { .. }), "{err}");
            assert!(err.to_string().starts_with("inputs[0]: "), "{err}");
        }
    }

    #[test]
    fn recursive_globs_descend_but_not_into_dot_folders() {
        let (_tmp, data) = setup();
        for dir in ["input/sub/deeper", "input/.git"] {
            std::fs::create_dir_all(data.root().join(dir)).expect("mkdir");
            std::fs::write(data.root().join(dir).join("x.txt"), "x").expect("write");
        }
        let files = data
            .expand_inputs(&["input/**/*.txt".into()])
            .expect("expand");
        let names: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(
            names,
            ["input/a.txt", "input/b.txt", "input/sub/deeper/x.txt"]
        );
        let err = data.expand_inputs(&["input/a**".into()]).expect_err("bad");
        assert!(matches!(err, PathError::BadGlob { .. }), "{err}");
    }

    #[test]
    fn attempt_temp_names_are_hidden_and_unique() {
        let final_path = Path::new("/d/jobs/j/mr-1-2");
        assert_eq!(
            DataDir::attempt_tmp(final_path, 7),
            Path::new("/d/jobs/j/.mr-1-2.a7.tmp")
        );
    }
}
