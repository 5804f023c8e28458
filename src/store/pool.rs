//! A small pool of blocking connections: up to `max` open at once, idle ones reused last-in first-out,
//! and a caller waits at most `wait` for one to come free. Opening happens outside the pool's lock, so
//! a slow connect holds up only its own caller.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Pool<C> {
    max: usize,
    wait: Duration,
    state: Mutex<State<C>>,
    freed: Condvar,
}

struct State<C> {
    idle: Vec<C>,
    /// Connections in use or idle.
    open: usize,
}

/// Why no connection was handed out.
#[derive(Debug)]
pub enum AcquireError<E> {
    /// Every connection stayed busy for the whole wait.
    Busy { max: usize, wait: Duration },
    /// Opening a new connection failed.
    Connect(E),
}

/// A connection out of the pool; it goes back when dropped unless [`Lease::discard`]ed.
pub struct Lease<'a, C> {
    pool: &'a Pool<C>,
    conn: Option<C>,
    /// Opened for this caller (not reused from the idle list).
    pub fresh: bool,
}

impl<C> Pool<C> {
    pub fn new(max: usize, wait: Duration) -> Pool<C> {
        Pool {
            max: max.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        // Counter and list updates complete under the lock: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, a new one from `open`, or an error once `wait` has passed.
    pub fn acquire<E>(
        &self,
        open: impl FnOnce() -> Result<C, E>,
    ) -> Result<Lease<'_, C>, AcquireError<E>> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(self.lease(conn, false));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(conn) => Ok(self.lease(conn, true)),
                    Err(e) => {
                        self.forget_one();
                        Err(AcquireError::Connect(e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AcquireError::Busy {
                    max: self.max,
                    wait: self.wait,
                });
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lease(&self, conn: C, fresh: bool) -> Lease<'_, C> {
        Lease {
            pool: self,
            conn: Some(conn),
            fresh,
        }
    }

    fn forget_one(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    /// Closes every idle connection (after a failure they are likely dead too).
    pub fn drop_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle); // closing sockets outside the lock
        self.freed.notify_all();
    }

    /// (open, idle) connections.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.open, s.idle.len())
    }
}

impl<C> Lease<'_, C> {
    pub fn conn(&mut self) -> &mut C {
        self.conn.as_mut().expect("present until dropped")
    }

    /// Closes the connection instead of returning it (it failed).
    pub fn discard(mut self) {
        self.conn = None;
        self.pool.forget_one();
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lock().idle.push(conn);
            self.pool.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn reuses_idle_connections_and_caps_how_many_are_open() {
        let pool: Pool<usize> = Pool::new(2, Duration::from_millis(50));
        let opened = AtomicUsize::new(0);
        let open = || Ok::<_, ()>(opened.fetch_add(1, Ordering::Relaxed));
        let a = pool.acquire(open).unwrap();
        let b = pool.acquire(open).unwrap();
        assert!(a.fresh && b.fresh);
        let started = Instant::now();
        assert!(matches!(
            pool.acquire(open),
            Err(AcquireError::Busy { max: 2, .. })
        ));
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "waited the bounded time"
        );
        drop(a);
        let mut c = pool.acquire(open).unwrap();
        assert_eq!((*c.conn(), c.fresh), (0, false), "the idle one is reused");
        c.discard();
        assert_eq!(pool.counts(), (1, 0));
        drop(b);
        pool.drop_idle();
        assert_eq!(pool.counts(), (0, 0));
        assert!(matches!(
            pool.acquire(|| Err::<usize, _>("refused")),
            Err(AcquireError::Connect("refused"))
        ));
        assert_eq!(pool.counts(), (0, 0), "a failed open frees its slot");
    }

    #[test]
    fn a_waiting_caller_gets_the_connection_freed_meanwhile() {
        let pool: Arc<Pool<u8>> = Arc::new(Pool::new(1, Duration::from_secs(5)));
        let held = pool.acquire(|| Ok::<_, ()>(7)).unwrap();
        let p = pool.clone();
        let waiter = std::thread::spawn(move || {
            let mut l = p.acquire(|| Ok::<_, ()>(9)).unwrap();
            *l.conn()
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert_eq!(waiter.join().unwrap(), 7);
    }
}
