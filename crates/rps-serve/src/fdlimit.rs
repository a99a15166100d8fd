//! The open-file limit (RLIMIT_NOFILE) and the connection cap derived from it: every client
//! connection is a file descriptor, and a server that runs out of them can accept nobody — not
//! even the liveness probe.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// File descriptors kept back for everything that is not a client connection: the listener,
/// the runtime, model and registry files, PostgreSQL, logs.
pub const HEADROOM: u64 = 64;

/// Raise the soft open-file limit to the hard one; returns the soft limit now in force
/// (`None`: unlimited).
pub fn raise_to_hard() -> Option<u64> {
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The current soft open-file limit (`None`: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// `--max-connections`, capped so that connections leave [`HEADROOM`] descriptors free (half
/// the limit when it is tiny); at least 1.
pub fn connection_cap(requested: usize, soft: Option<u64>) -> usize {
    let Some(soft) = soft else {
        return requested.max(1);
    };
    let usable = if soft > 2 * HEADROOM {
        soft - HEADROOM
    } else {
        soft / 2
    };
    let usable = usize::try_from(usable).unwrap_or(usize::MAX);
    requested.min(usable).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_headroom() {
        assert_eq!(connection_cap(2048, Some(1024)), 960);
        assert_eq!(connection_cap(2048, Some(256)), 192);
        assert_eq!(connection_cap(2048, Some(100)), 50);
        assert_eq!(connection_cap(100, Some(1 << 20)), 100);
        assert_eq!(connection_cap(2048, None), 2048);
        assert_eq!(connection_cap(0, Some(1)), 1);
    }
}
