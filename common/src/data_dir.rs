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
            if source.kind() == std::io::ErrorKind::NotFound {
                PathError::NoMatch {
                    field: field.to_string(),
                    path: relative.to_string(),
                }
            } else {
                PathError::Io {
                    field: field.to_string(),
                    path: relative.to_string(),
                    source,
                }
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
    pub fn expand_inputs(&self, patterns: &[String]) -> Result<Vec<InputFile>, PathError> {
        let mut files = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            let field = format!("inputs[{i}]");
            check_relative(&field, pattern)?;
            let before = files.len();
            if is_glob(pattern) {
                let full = format!(
                    "{}/{}",
                    glob::Pattern::escape(&self.root.to_string_lossy()),
                    pattern
                );
                let options = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    // Dot files are temp files and hidden state, never inputs by accident.
                    require_literal_leading_dot: true,
                };
                let matches = glob::glob_with(&full, options).map_err(|e| PathError::BadGlob {
                    field: field.clone(),
                    path: pattern.clone(),
                    message: e.msg.to_string(),
                })?;
                for entry in matches {
                    // `input/.*` also yields `input/.` and `input/..`: not files, never inputs.
                    let Ok(path) = entry else { continue };
                    if path.file_name().is_none() || path.ends_with(".") {
                        continue;
                    }
                    let relative = self.relative_name(&path);
                    let resolved = self.resolve(&field, &relative)?;
                    if resolved.is_file() {
                        files.push(self.input_file(&field, relative, &resolved)?);
                    }
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

    fn relative_name(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `.mr/`: the coordinator's own state (journal, app modules). Hidden, so no input glob
    /// matches it.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
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

    /// Where attempt `attempt` writes the file that becomes `final_path` once it is accepted.
    pub fn attempt_tmp(final_path: &Path, attempt: u64) -> PathBuf {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        final_path.with_file_name(format!(".{name}.a{attempt}.tmp"))
    }
}

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

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn check_relative(field: &str, path: &str) -> Result<(), PathError> {
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
    fn attempt_temp_names_are_hidden_and_unique() {
        let final_path = Path::new("/d/jobs/j/mr-1-2");
        assert_eq!(
            DataDir::attempt_tmp(final_path, 7),
            Path::new("/d/jobs/j/.mr-1-2.a7.tmp")
        );
    }
}
