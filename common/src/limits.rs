//! Process resource limits that both binaries set at start-up.
//!
//! Linux starts most processes with a soft `RLIMIT_NOFILE` of 1024 open files while the hard
//! limit (what the process may raise it to by itself) is often far higher. A worker merging
//! many intermediates and a coordinator holding a connection per worker and client need more
//! than the soft default, so [`raise_open_file_limit`] lifts the soft limit to the hard one
//! first thing in both `main`s. The worker still bounds how many intermediates a reduce opens
//! at once by the limit then in force (see `mr_worker::tasks::merge_fan_in`).
//!
//! The worker and the coordinator also turn transparent huge pages off for themselves
//! ([`disable_transparent_huge_pages`]): see there for why.

use std::io;

/// The open-file limit (`RLIMIT_NOFILE`) before and after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit: the most the soft limit can be raised to without privileges.
    pub hard: u64,
}

/// The soft and hard `RLIMIT_NOFILE` now, as `(soft, hard)`; `RLIM_INFINITY` is `u64::MAX`.
pub fn open_file_limits() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (nothing to do when it is there
/// already) and logs the result: at info when it changed, at debug otherwise, as a warning
/// when it cannot be read or set (the process then runs with the limit it has).
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let result = try_raise();
    match &result {
        Ok(l) if l.soft != l.before => {
            tracing::info!(
                from = l.before,
                to = l.soft,
                hard = l.hard,
                "raised the open-file limit (RLIMIT_NOFILE)"
            )
        }
        Ok(l) => tracing::debug!(
            soft = l.soft,
            hard = l.hard,
            "open-file limit (RLIMIT_NOFILE) already at its hard limit"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit (RLIMIT_NOFILE)"),
    }
    result
}

fn try_raise() -> io::Result<OpenFileLimit> {
    let (before, hard) = open_file_limits()?;
    if before >= hard {
        return Ok(OpenFileLimit {
            before,
            soft: before,
            hard,
        });
    }
    let limit = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `rlimit` through a pointer to a live local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (soft, hard) = open_file_limits()?;
    Ok(OpenFileLimit { before, soft, hard })
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`, inherited by
/// its children), so that its anonymous memory comes in 4 KiB pages however the machine's
/// `/sys/kernel/mm/transparent_hugepage/enabled` is set.
///
/// The worker and the coordinator call it first thing. mimalloc asks for huge pages
/// (`MADV_HUGEPAGE`) on the memory it maps. A map task's large buffers (its split, the
/// records out of the instance, their sort order) are mapped, freed and mapped again for
/// every task: each first touch of a 2 MiB region then faulted in and zeroed a whole huge
/// page. In a profile of bench figure 1 that zeroing (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page`) was 18% of all samples; without huge pages the workers used
/// about a quarter less CPU for the same job (BENCHMARKS.md, "Transparent huge pages"). The
/// coordinator's many small, long-lived records left huge pages partly used: a 100k-task
/// job's coordinator peaked ~12% higher with them (BENCHMARKS.md, "Transparent huge pages
/// off in the coordinator"). A failure (a kernel without the call) is returned and changes
/// nothing else.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) takes no pointers; it sets a flag of
    // this process.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether transparent huge pages are off for this process (`PR_GET_THP_DISABLE`).
pub fn transparent_huge_pages_disabled() -> io::Result<bool> {
    // SAFETY: as above; the call returns the flag.
    match unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) } {
        -1 => Err(io::Error::last_os_error()),
        flag => Ok(flag == 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_huge_pages_can_be_turned_off() {
        disable_transparent_huge_pages().expect("prctl");
        assert!(transparent_huge_pages_disabled().expect("prctl"));
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        assert!(status.contains("THP_enabled:\t0"), "{status}");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = open_file_limits().expect("getrlimit");
        assert!(soft <= hard);
        // Lower the soft limit (any process may), then raise it back.
        let lowered = soft.min(512);
        let limit = libc::rlimit {
            rlim_cur: lowered,
            rlim_max: hard,
        };
        // SAFETY: as in `try_raise`.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let raised = raise_open_file_limit().expect("setrlimit");
        assert_eq!(raised.before, lowered);
        assert_eq!(raised.soft, hard);
        assert_eq!(raised.hard, hard);
        assert_eq!(open_file_limits().expect("getrlimit"), (hard, hard));
        // Already at the hard limit: nothing changes.
        let again = raise_open_file_limit().expect("setrlimit");
        assert_eq!((again.before, again.soft), (hard, hard));
    }
}
