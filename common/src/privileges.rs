//! Who the services run as: the owner of the data folder, whoever that is.
//!
//! In compose, the containers start as uid 0 with every capability dropped but `SETUID` and
//! `SETGID` (and `no-new-privileges`, a read-only root). First thing in `main`, before the
//! runtime starts any thread and before any file is created, [`drop_to_data_owner`]:
//!
//! - does nothing unless the process runs as uid 0 (local processes, tests as a user);
//! - stats the data folder (or, while it does not exist yet, the nearest folder above it,
//!   where it will be created) and takes its owner's uid and gid; `MR_UID` / `MR_GID`, when
//!   set and not empty, override them ([`target`]);
//! - sets the supplementary groups to that one gid, then the real, effective and saved gid,
//!   then the uid. Leaving uid 0 for any other uid clears every capability (the kernel does
//!   so: no `SECBIT_KEEP_CAPS`), so the process is an ordinary user and the files it writes
//!   are the folder owner's;
//! - when the target uid is 0 (a root-owned folder, or `MR_UID=0`), stays uid 0 but empties
//!   every capability set (`capset`): an unprivileged root, which can write only what root
//!   owns or what the mode bits let anyone write, and which `no-new-privileges` keeps from
//!   regaining capabilities through `execve`;
//! - checks that no capability is left, and logs one line with the uid and gid.
//!
//! The ids are numbers: the image has no `/etc/passwd` entry for most of them, and needs none.
//!
//! [`check_writable`] then lets the coordinator fail at start-up with one message that names
//! the folder, the uid:gid and the fix ([`NOT_WRITABLE`]), instead of a journal error.

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable overriding the uid the services run as (default: the folder's owner).
pub const UID_ENV: &str = "MR_UID";
/// Environment variable overriding the gid the services run as (default: the folder's group).
pub const GID_ENV: &str = "MR_GID";
/// The words every "data folder not writable" error starts with, for tests and log searches.
pub const NOT_WRITABLE: &str = "cannot write the data folder";

/// A numeric user and group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// What [`drop_to_data_owner`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunsAs {
    /// Not started as uid 0: nothing changed.
    NotRoot,
    /// Now runs as this non-root identity, with no capability.
    User(Identity),
    /// Stays uid 0 (with this gid), with every capability dropped.
    RootWithoutCapabilities(Identity),
}

/// Why the process could not take the data folder owner's identity, or cannot write it.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// `MR_UID` or `MR_GID` is not a numeric id.
    #[error("{name}='{value}' is not a numeric id (0 to 4294967294)")]
    BadId { name: &'static str, value: String },
    /// The data folder (or a folder above it) cannot be stat'ed.
    #[error("data folder {}: cannot find its owner: {error}", path.display())]
    Owner { path: PathBuf, error: io::Error },
    /// A set*id call failed: most likely the container lacks CAP_SETUID / CAP_SETGID.
    #[error(
        "cannot switch to uid {uid} gid {gid}: {call}: {error} (a container started as root \
         needs cap_add SETUID and SETGID; see deploy/README.md)"
    )]
    Switch {
        uid: u32,
        gid: u32,
        call: &'static str,
        error: io::Error,
    },
    /// Reading or emptying the capability sets failed.
    #[error("cannot drop capabilities: {call}: {error}")]
    Capabilities {
        call: &'static str,
        error: io::Error,
    },
    /// Capabilities are left after the switch (never expected: refuse to run with them).
    #[error(
        "capabilities left after switching to uid {uid}: effective {effective:#x}, \
         permitted {permitted:#x}"
    )]
    CapabilitiesLeft {
        uid: u32,
        effective: u64,
        permitted: u64,
    },
    /// The data folder (or its `.mr/`) cannot be written by the identity the process runs as.
    #[error(
        "{NOT_WRITABLE} {} as uid:gid {uid}:{gid} ({error}). Fix: make it writable by that \
         user (on the host: chown -R {uid}:{gid} on the folder, or chmod u+rwx), or set \
         MR_UID/MR_GID to a user and group that can write it",
        path.display()
    )]
    NotWritable {
        path: PathBuf,
        uid: u32,
        gid: u32,
        error: io::Error,
    },
}

/// The identity to run as: the folder's owner, each id overridden when given.
pub fn target(owner: Identity, uid: Option<u32>, gid: Option<u32>) -> Identity {
    Identity {
        uid: uid.unwrap_or(owner.uid),
        gid: gid.unwrap_or(owner.gid),
    }
}

/// An id from an environment variable's value: `None` when unset or empty.
pub fn parse_id(name: &'static str, value: Option<&str>) -> Result<Option<u32>, PrivilegeError> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Ok(None);
    }
    // u32::MAX is -1, "leave unchanged", to the set*id calls.
    match value.parse::<u32>() {
        Ok(id) if id != u32::MAX => Ok(Some(id)),
        _ => Err(PrivilegeError::BadId {
            name,
            value: value.to_string(),
        }),
    }
}

/// `MR_UID` and `MR_GID` from the environment.
pub fn overrides_from_env() -> Result<(Option<u32>, Option<u32>), PrivilegeError> {
    let var = |name| std::env::var(name).ok();
    Ok((
        parse_id(UID_ENV, var(UID_ENV).as_deref())?,
        parse_id(GID_ENV, var(GID_ENV).as_deref())?,
    ))
}

/// Runs as the data folder's owner when started as uid 0 (see the module's documentation).
/// Call before any thread is started and any file is created.
pub fn drop_to_data_owner(data_dir: &Path) -> Result<RunsAs, PrivilegeError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(RunsAs::NotRoot);
    }
    let (uid, gid) = overrides_from_env()?;
    let to = target(owner(data_dir)?, uid, gid);
    set_ids(to)?;
    drop_capabilities()?;
    let (effective, permitted) = capabilities()?;
    if effective != 0 || permitted != 0 {
        return Err(PrivilegeError::CapabilitiesLeft {
            uid: to.uid,
            effective,
            permitted,
        });
    }
    let source = if uid.is_some() || gid.is_some() {
        "MR_UID/MR_GID"
    } else {
        "the data folder's owner"
    };
    if to.uid == 0 {
        tracing::info!(
            uid = to.uid,
            gid = to.gid,
            data_dir = %data_dir.display(),
            "running as uid 0 ({source}) with every capability dropped"
        );
        Ok(RunsAs::RootWithoutCapabilities(to))
    } else {
        tracing::info!(
            uid = to.uid,
            gid = to.gid,
            data_dir = %data_dir.display(),
            "switched from root to uid {} gid {} ({source}); no capability left",
            to.uid,
            to.gid
        );
        Ok(RunsAs::User(to))
    }
}

/// Creates and removes a probe file in the data folder and in its `.mr/` (creating both if
/// need be, as the coordinator would) and in `jobs/` if it exists, and opens the journal if
/// it exists, so that a folder the process cannot write, or state an earlier run left under
/// another owner, fails here, with [`PrivilegeError::NotWritable`].
pub fn check_writable(data_dir: &Path) -> Result<(), PrivilegeError> {
    let not_writable = |path: &Path, error| {
        // SAFETY: geteuid and getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        PrivilegeError::NotWritable {
            path: path.to_path_buf(),
            uid,
            gid,
            error,
        }
    };
    let state = data_dir.join(crate::data_dir::STATE_DIR);
    std::fs::create_dir_all(data_dir).map_err(|e| not_writable(data_dir, e))?;
    probe(data_dir).map_err(|e| not_writable(data_dir, e))?;
    std::fs::create_dir_all(&state).map_err(|e| not_writable(&state, e))?;
    probe(&state).map_err(|e| not_writable(&state, e))?;
    let journal = state.join(crate::data_dir::JOURNAL_FILE);
    if journal.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&journal)
            .map_err(|e| not_writable(&journal, e))?;
    }
    let jobs = data_dir.join(crate::data_dir::JOBS_DIR);
    if jobs.is_dir() {
        probe(&jobs).map_err(|e| not_writable(&jobs, e))?;
    }
    Ok(())
}

fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)
}

/// The owner of the folder or, while it does not exist, of the nearest folder above it.
fn owner(data_dir: &Path) -> Result<Identity, PrivilegeError> {
    use std::os::unix::fs::MetadataExt;
    let mut last = None;
    for dir in data_dir.ancestors() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match std::fs::metadata(dir) {
            Ok(meta) => {
                return Ok(Identity {
                    uid: meta.uid(),
                    gid: meta.gid(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => last = Some(error),
            Err(error) => {
                return Err(PrivilegeError::Owner {
                    path: dir.to_path_buf(),
                    error,
                });
            }
        }
    }
    Err(PrivilegeError::Owner {
        path: data_dir.to_path_buf(),
        error: last.unwrap_or_else(|| io::ErrorKind::NotFound.into()),
    })
}

/// Groups, then gid, then uid (after the uid, the gid could no longer be changed). A call
/// whose result is already in place is skipped, so a process without CAP_SETGID that needs
/// no change still starts.
fn set_ids(to: Identity) -> Result<(), PrivilegeError> {
    let fail = |call, error| PrivilegeError::Switch {
        uid: to.uid,
        gid: to.gid,
        call,
        error,
    };
    let check = |call, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(fail(call, io::Error::last_os_error()))
        }
    };
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresgid writes three gids through pointers to live locals.
    check("getresgid", unsafe {
        libc::getresgid(&mut r, &mut e, &mut s)
    })?;
    let same_gid = r == to.gid && e == to.gid && s == to.gid;
    if !same_gid || groups().map_err(|e| fail("getgroups", e))? != [to.gid] {
        let groups = [to.gid];
        // SAFETY: setgroups reads one gid from a live array of length 1.
        check("setgroups", unsafe { libc::setgroups(1, groups.as_ptr()) })?;
    }
    if !same_gid {
        // SAFETY: setresgid takes plain integers.
        check("setresgid", unsafe {
            libc::setresgid(to.gid, to.gid, to.gid)
        })?;
    }
    // SAFETY: getresuid writes three uids through pointers to live locals.
    check("getresuid", unsafe {
        libc::getresuid(&mut r, &mut e, &mut s)
    })?;
    if !(r == to.uid && e == to.uid && s == to.uid) {
        // SAFETY: setresuid takes plain integers.
        check("setresuid", unsafe {
            libc::setresuid(to.uid, to.uid, to.uid)
        })?;
    }
    Ok(())
}

/// The supplementary groups of the process.
fn groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: with a size of 0, getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(n).map_err(|_| io::Error::last_os_error())?];
    // SAFETY: the buffer holds `n` gids.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).map_err(|_| io::Error::last_os_error())?);
    Ok(groups)
}

/// `_LINUX_CAPABILITY_VERSION_3` of linux/capability.h: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct` (not in the libc crate).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (not in the libc crate).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties the effective, permitted and inheritable sets of this thread, before any other
/// exists (lowering them needs no privilege; the ambient set follows the permitted one).
fn drop_capabilities() -> Result<(), PrivilegeError> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a v3 header and two data structs from live locals.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Capabilities {
            call: "capset",
            error: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The effective and permitted sets of this thread, as 64-bit masks.
fn capabilities() -> Result<(u64, u64), PrivilegeError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads and writes a v3 header and writes two data structs, all live locals.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Capabilities {
            call: "capget",
            error: io::Error::last_os_error(),
        });
    }
    let mask = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok((
        mask(data[0].effective, data[1].effective),
        mask(data[0].permitted, data[1].permitted),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Identity = Identity {
        uid: 1000,
        gid: 100,
    };

    #[test]
    fn the_folders_owner_is_the_default_and_each_id_can_be_overridden() {
        assert_eq!(target(OWNER, None, None), OWNER);
        assert_eq!(
            target(OWNER, Some(10001), None),
            Identity {
                uid: 10001,
                gid: 100
            }
        );
        assert_eq!(target(OWNER, None, Some(0)), Identity { uid: 1000, gid: 0 });
        assert_eq!(target(OWNER, Some(0), Some(0)), Identity { uid: 0, gid: 0 });
    }

    #[test]
    fn ids_are_numbers_and_empty_means_unset() {
        assert_eq!(parse_id(UID_ENV, None).ok(), Some(None));
        assert_eq!(parse_id(UID_ENV, Some("")).ok(), Some(None));
        assert_eq!(parse_id(UID_ENV, Some(" 1000 ")).ok(), Some(Some(1000)));
        assert_eq!(parse_id(GID_ENV, Some("0")).ok(), Some(Some(0)));
        for bad in ["mr", "-1", "4294967295", "1e3"] {
            assert!(
                matches!(
                    parse_id(UID_ENV, Some(bad)),
                    Err(PrivilegeError::BadId { name: UID_ENV, .. })
                ),
                "{bad} is refused"
            );
        }
    }

    #[test]
    fn a_missing_folder_takes_the_owner_of_the_folder_above() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = std::fs::metadata(dir.path()).expect("stat");
        let found = owner(&dir.path().join("not/yet")).expect("an owner");
        assert_eq!(
            found,
            Identity {
                uid: meta.uid(),
                gid: meta.gid()
            }
        );
    }

    #[test]
    fn a_writable_folder_passes_and_leaves_only_its_state_folder() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        check_writable(&dir).expect("created and writable");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [crate::data_dir::STATE_DIR]);
        assert_eq!(
            std::fs::read_dir(dir.join(crate::data_dir::STATE_DIR))
                .expect("list")
                .count(),
            0,
            "no probe file is left"
        );
    }

    #[test]
    fn a_folder_that_cannot_be_made_names_itself_and_the_ids() {
        let parent = tempfile::tempdir().expect("tempdir");
        let file = parent.path().join("a-file");
        std::fs::write(&file, "").expect("write");
        // Even root cannot create a folder under a regular file.
        let dir = file.join("data");
        let error = check_writable(&dir).expect_err("not writable");
        // SAFETY: geteuid and getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        match &error {
            PrivilegeError::NotWritable {
                path,
                uid: u,
                gid: g,
                ..
            } => assert_eq!((path, *u, *g), (&dir, uid, gid)),
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().starts_with(NOT_WRITABLE), "{error}");
    }

    #[test]
    fn not_started_as_root_nothing_changes() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped: runs as root, and switching would change the test process");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(drop_to_data_owner(dir.path()).ok(), Some(RunsAs::NotRoot));
    }
}
