//! Process resource limits that both binaries set at start-up.
//!
//! Linux starts most processes with a soft `RLIMIT_NOFILE` of 1024 open files while the hard
//! limit (what the process may raise it to by itself) is often far higher. A worker merging
//! many intermediates and a coordinator holding a connection per worker and client need more
//! than the soft default, so [`raise_open_file_limit`] lifts the soft limit to the hard one
//! first thing in both `main`s. The worker still bounds how many intermediates a reduce opens
//! at once by the limit then in force (see `mr_worker::tasks::merge_fan_in`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
