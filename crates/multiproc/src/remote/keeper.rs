//! A background thread that renews a lease: a queue consumer's heartbeat, a lock holder's
//! watchdog. It stops when its [`Keeper`] is dropped, when its task says so, or with the
//! process: a killed holder stops renewing, which is what lets its lease run out.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Stops its thread on drop.
pub(crate) struct Keeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Keeper {
    /// Runs `tick` every `period` on a new thread until dropped, or until `tick` returns
    /// `false`. If the thread cannot be started, the lease is simply not renewed (it runs
    /// out as if this process were gone) and a warning is logged.
    pub(crate) fn spawn(
        name: &str,
        period: Duration,
        mut tick: impl FnMut() -> bool + Send + 'static,
    ) -> Keeper {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let theirs = Arc::clone(&stop);
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let (flag, cv) = &*theirs;
                loop {
                    {
                        let g = flag.lock().unwrap_or_else(|e| e.into_inner());
                        let (g, _) = cv
                            .wait_timeout_while(g, period, |stopped| !*stopped)
                            .unwrap_or_else(|e| e.into_inner());
                        if *g {
                            return;
                        }
                    }
                    if !tick() {
                        return;
                    }
                }
            });
        if let Err(e) = started {
            log::warn!("multiproc::remote: cannot start the lease keeper thread: {e}");
        }
        Keeper { stop }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}
