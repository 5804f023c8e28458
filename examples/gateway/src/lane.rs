//! A dispatch lane: one thread per slow driver (Python, gRPC) that runs that driver's hooks one
//! after another, off the async workers.
//!
//! Handing a call to the lane is a queue push, and a wake-up only when the lane thread sleeps; under
//! load the lane drains its queue without sleeping in between, where the blocking pool woke one of
//! its threads per call. And the driver's calls do not contend with each other (for Python: no GIL
//! hand-overs between threads).
//!
//! A call that runs long (a hook that sleeps) must not stall the requests queued behind it: a request
//! whose work the lane has not started within the lane's patience takes it back and runs it on the
//! blocking pool, and while the lane's current call has been running longer than that, new work goes
//! straight to the pool. Either way the async worker only awaits.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Work queued on a lane: taken by whoever runs it first, the lane or the request that lost
/// patience.
struct Slot<F>(Mutex<Option<F>>);

impl<F> Slot<F> {
    fn take(&self) -> Option<F> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A slot as the lane's thread sees it, whatever its work's type (one allocation per hand-off:
/// the slot is the work).
trait Queued: Send + Sync {
    /// Runs the work unless its request took it back.
    fn run(&self);
}

impl<F: FnOnce() + Send> Queued for Slot<F> {
    fn run(&self) {
        if let Some(work) = self.take() {
            work();
        }
    }
}

/// When the lane's current call started: nanoseconds since `epoch`, plus one; 0 while it is idle.
struct Clock {
    epoch: Instant,
    busy_since: AtomicU64,
}

const IDLE: u64 = 0;

impl Clock {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// The current call has been running longer than `patience`.
    fn stuck(&self, patience: Duration) -> bool {
        let since = self.busy_since.load(Ordering::Relaxed);
        since != IDLE && self.now().saturating_sub(since) > patience.as_nanos() as u64
    }
}

/// Where a lane's work ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// On the lane's thread.
    Lane,
    /// On the blocking pool: the lane was stuck in a long call, or did not start the work in time.
    Pool,
}

/// The work panicked (or its thread failed).
#[derive(Debug)]
pub struct Lost;

/// One driver's lane; dropping it lets its thread end once the queue is empty.
pub struct Lane {
    queue: mpsc::Sender<Arc<dyn Queued>>,
    clock: Arc<Clock>,
    patience: Duration,
}

impl Lane {
    /// Starts the lane's thread (named `name`).
    pub fn start(name: &str, patience: Duration) -> std::io::Result<Lane> {
        let (queue, work) = mpsc::channel::<Arc<dyn Queued>>();
        let clock = Arc::new(Clock {
            epoch: Instant::now(),
            busy_since: AtomicU64::new(IDLE),
        });
        let lane_clock = clock.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                for slot in work {
                    lane_clock
                        .busy_since
                        .store(lane_clock.now(), Ordering::Relaxed);
                    // A panicking job drops its result sender (its request sees `Lost`); the lane
                    // goes on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| slot.run()));
                    lane_clock.busy_since.store(IDLE, Ordering::Relaxed);
                }
            })?;
        Ok(Lane {
            queue,
            clock,
            patience,
        })
    }

    /// Runs `work` on the lane, or on the blocking pool when the lane is held up; must be called
    /// within a tokio runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(T, Ran), Lost> {
        let (done, mut result) = oneshot::channel();
        let job = move || {
            let _ = done.send(work());
        };
        if self.clock.stuck(self.patience) {
            return on_pool(job, result).await;
        }
        let slot = Arc::new(Slot(Mutex::new(Some(job))));
        if self.queue.send(slot.clone()).is_err() {
            // The lane's thread is gone (it cannot panic; only at exit).
            return match slot.take() {
                Some(job) => on_pool(job, result).await,
                None => Err(Lost),
            };
        }
        if let Ok(got) = tokio::time::timeout(self.patience, &mut result).await {
            return got.map(|value| (value, Ran::Lane)).map_err(|_| Lost);
        }
        match slot.take() {
            Some(job) => on_pool(job, result).await,
            // The lane started it: wait for it there.
            None => result
                .await
                .map(|value| (value, Ran::Lane))
                .map_err(|_| Lost),
        }
    }
}

async fn on_pool<T>(
    job: impl FnOnce() + Send + 'static,
    result: oneshot::Receiver<T>,
) -> Result<(T, Ran), Lost> {
    // A panic drops the sender: `result` tells, the join handle need not be awaited.
    drop(tokio::task::spawn_blocking(job));
    result
        .await
        .map(|value| (value, Ran::Pool))
        .map_err(|_| Lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[test]
    fn quick_work_runs_on_the_lane_thread_in_order() {
        let lane = Lane::start("lane-test", Duration::from_secs(5)).unwrap();
        runtime().block_on(async {
            for i in 0..20 {
                let (got, ran) = lane.run(move || (i, thread_name())).await.unwrap();
                assert_eq!(got, (i, "lane-test".to_owned()));
                assert_eq!(ran, Ran::Lane);
            }
        });
    }

    /// The lane is held by a call that does not end until the test says so.
    fn held_lane(patience: Duration) -> (Lane, mpsc::Sender<()>) {
        let lane = Lane::start("lane-held", patience).unwrap();
        let (release, released) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let slot = Arc::new(Slot(Mutex::new(Some(move || {
            started.send(()).unwrap();
            released.recv().unwrap();
        }))));
        lane.queue.send(slot).unwrap();
        has_started.recv().unwrap();
        (lane, release)
    }

    #[test]
    fn work_queued_behind_a_long_call_is_taken_back_to_the_pool() {
        // Patience far above the test's own timing: the lane is not yet "stuck" when the work is
        // queued, so it waits in the queue and is taken back.
        let patience = Duration::from_millis(200);
        let (lane, release) = held_lane(patience);
        let started = Instant::now();
        let (name, ran) = runtime()
            .block_on(lane.run(thread_name))
            .expect("the work ran");
        assert_eq!(ran, Ran::Pool);
        assert_ne!(name, "lane-held");
        assert!(started.elapsed() >= patience, "it waited its patience out");
        release.send(()).unwrap();
        // Until the held call has returned, the lane still counts as stuck.
        let waited = Instant::now();
        while lane.clock.stuck(patience) {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the lane stays stuck"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // The lane skips the slot that was taken back and serves again.
        let (name, ran) = runtime().block_on(lane.run(thread_name)).unwrap();
        assert_eq!((name.as_str(), ran), ("lane-held", Ran::Lane));
    }

    #[test]
    fn a_lane_stuck_in_a_long_call_sends_new_work_straight_to_the_pool() {
        let patience = Duration::from_millis(200);
        let (lane, release) = held_lane(patience);
        let runtime = runtime();
        std::thread::sleep(patience + Duration::from_millis(50));
        assert!(lane.clock.stuck(patience));
        let started = Instant::now();
        let (_, ran) = runtime.block_on(lane.run(|| ())).unwrap();
        assert_eq!(ran, Ran::Pool);
        assert!(
            started.elapsed() < patience,
            "it did not wait for the lane: {:?}",
            started.elapsed()
        );
        release.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_is_lost_and_the_lane_goes_on() {
        let lane = Lane::start("lane-panic", Duration::from_secs(5)).unwrap();
        runtime().block_on(async {
            let lost = lane.run(|| -> u8 { panic!("a hook's panic") }).await;
            assert!(matches!(lost, Err(Lost)));
            let (v, ran) = lane.run(|| 7).await.unwrap();
            assert_eq!((v, ran), (7, Ran::Lane));
        });
    }
}
