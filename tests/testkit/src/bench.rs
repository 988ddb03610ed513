//! What the channel benchmarks share: pushes to send ([`push`], [`pushes`]), drivers that send
//! them with a bounded number in flight ([`send_all`] on one task, [`spawn_all`] over a
//! runtime's workers), the measurement of a run ([`measure`], giving a [`Report`]: wall time,
//! deliveries/s, CPU per delivery) and, for a channel and its loopback fake in one process,
//! the two runtimes and the lines the examples print ([`Runtimes`], [`print_report`]).
//!
//! CPU time is read per named thread group ([`thread_cpu_secs`], so client and fake are told
//! apart) or per process ([`process_cpu_secs`], for a fake in a child process), and the load
//! average is there to report beside wall-clock figures. Linux only (`/proc`); elsewhere the
//! readers say so. Nothing here depends on a channel crate: a benchmark passes its channel's
//! `send` as a closure.
//!
//! ```no_run
//! use tidings::{AppId, PushAddress};
//! use tidings_testkit::bench::{self, Labels, Runtimes};
//!
//! let runtimes = Runtimes::new("my"); // threads `my-client` and `my-mock`
//! // … start the fake on `runtimes.mock()` and build the channel here …
//! let app = AppId::new("bench");
//! let addresses: Vec<PushAddress> = (0..100)
//!     .map(|t| PushAddress::Fcm { token: format!("token-{t}") })
//!     .collect();
//! let pushes = bench::pushes(&app, &addresses, 1_000);
//! let report = runtimes.run(1_000, 64, 1, |i| {
//!     let push = &pushes[i];
//!     async move { Ok::<_, std::convert::Infallible>(push) } // `channel.send(push)`
//! });
//! bench::print_report(&report, &Labels {
//!     bench: "my_bench",
//!     variant: None,
//!     addresses: addresses.len(),
//!     address_noun: "tokens",
//!     wait_note: true,
//! }, 1_001); // the fake's request count
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::ready;
use futures::stream::{self, StreamExt};
use tidings::{
    AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId, Priority, Push,
    PushAddress, PushContent, Timestamp, UserId, VisualContent,
};
use tokio::runtime::Runtime;

/// Push number `i` of a run: a shoulder tap titled "New message" to a fresh, active endpoint of
/// `app` at `address` owned by user `user-{user}`, with sequence `i + 1`, collapse id `n{i}`,
/// normal priority, first attempt, expiring in an hour.
pub fn push(app: &AppId, user: usize, address: PushAddress, i: usize) -> Push {
    let now = Timestamp::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new_random(),
        app: app.clone(),
        user: UserId::new(format!("user-{user}")),
        installation_id: None,
        address,
        active: true,
        created_at: now,
        last_seen_at: now,
        address_expires_at: None,
        deactivation_reason: None,
    };
    Push {
        delivery_id: DeliveryId::new_random(),
        kind: DeliveryKind::Notification,
        app: app.clone(),
        endpoint: Arc::new(endpoint),
        notification_id: Some(NotificationId::new_random()),
        sequence: i as u64 + 1,
        priority: Priority::Normal,
        collapse_id: format!("n{i}"),
        group: None,
        display_ttl: None,
        expires_at: now.plus(Duration::from_secs(3600)),
        sent_at: now,
        attempt: 1,
        content: PushContent::Tap {
            alert: Some(VisualContent {
                title: "New message".into(),
                body: None,
            }),
        },
    }
}

/// `count` pushes ([`push`]) to `addresses` in turn: push `i` goes to address `i % len` (each
/// address with a user of its own). Build them before the run, so it measures sending alone.
///
/// # Panics
///
/// If `addresses` is empty and `count` is not zero.
pub fn pushes(app: &AppId, addresses: &[PushAddress], count: usize) -> Vec<Push> {
    (0..count)
        .map(|i| {
            let a = i % addresses.len();
            push(app, a, addresses[a].clone(), i)
        })
        .collect()
}

/// Sends pushes `0..pushes` by calling `send(i)`, with at most `in_flight` sends pending at
/// once, all polled by the calling task (`buffer_unordered`); returns how many failed.
///
/// The sends run where this future is polled: under `Runtime::block_on` that is the calling
/// thread, not the runtime's workers (which still run the tasks the channel spawns, such as its
/// connections). To spread the sends themselves over the workers, use [`spawn_all`].
pub async fn send_all<F, Fut, T, E>(pushes: usize, in_flight: usize, send: F) -> usize
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    stream::iter(0..pushes)
        .map(send)
        .buffer_unordered(in_flight)
        .filter(|r| ready(r.is_err()))
        .count()
        .await
}

/// Sends pushes `0..pushes` from `workers` tasks spawned on the current Tokio runtime, each
/// taking the next number and awaiting `send(i)` before taking another (so at most `workers`
/// sends are pending); returns how many failed. On a multi-threaded runtime the sends run on all
/// its workers.
///
/// # Panics
///
/// Outside a Tokio runtime, or if a worker panics.
pub async fn spawn_all<F, Fut, T, E>(pushes: usize, workers: usize, send: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let send = Arc::new(send);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (send, next, failed) = (send.clone(), next.clone(), failed.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pushes {
                    return;
                }
                if send(i).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a benchmark worker panicked");
    }
    failed.load(Ordering::Relaxed)
}

/// What a benchmark run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Pushes sent in the measured run.
    pub pushes: usize,
    /// Pushes sent before it, not measured ([`Runtimes::run`]'s warm-up).
    pub warm_up: usize,
    /// Measured pushes that failed.
    pub failures: usize,
    /// Wall-clock time of the measured run.
    pub wall: Duration,
    /// CPU seconds the client used during the run; `None` where it could not be read.
    pub client_cpu_secs: Option<f64>,
    /// CPU seconds the fake used during the run; `None` where it could not be read.
    pub mock_cpu_secs: Option<f64>,
}

impl Report {
    /// Pushes sent per second of wall-clock time (failed ones included).
    pub fn deliveries_per_sec(&self) -> f64 {
        self.pushes as f64 / self.wall.as_secs_f64()
    }

    /// The client's CPU time per push, in microseconds.
    pub fn client_cpu_micros_per_delivery(&self) -> Option<f64> {
        self.client_cpu_secs.map(|cpu| self.micros_per_push(cpu))
    }

    /// The fake's CPU time per push, in microseconds.
    pub fn mock_cpu_micros_per_delivery(&self) -> Option<f64> {
        self.mock_cpu_secs.map(|cpu| self.micros_per_push(cpu))
    }

    fn micros_per_push(&self, cpu_secs: f64) -> f64 {
        cpu_secs * 1e6 / self.pushes as f64
    }
}

/// Runs `run` (which sends `pushes` pushes and returns how many failed) and measures it: wall
/// time, and the CPU time `client_cpu` and `mock_cpu` (readers of CPU seconds used so far, such
/// as [`thread_cpu_secs`] or [`process_cpu_secs`]) count during it. The report's `warm_up` is 0.
pub fn measure<C, M>(
    pushes: usize,
    client_cpu: C,
    mock_cpu: M,
    run: impl FnOnce() -> usize,
) -> Report
where
    C: Fn() -> Option<f64>,
    M: Fn() -> Option<f64>,
{
    let client_before = client_cpu();
    let mock_before = mock_cpu();
    let started = Instant::now();
    let failures = run();
    let wall = started.elapsed();
    let spent = |after: Option<f64>, before: Option<f64>| after.zip(before).map(|(a, b)| a - b);
    Report {
        pushes,
        warm_up: 0,
        failures,
        wall,
        client_cpu_secs: spent(client_cpu(), client_before),
        mock_cpu_secs: spent(mock_cpu(), mock_before),
    }
}

/// A channel and its loopback fake in one process: two Tokio runtimes of one worker thread each,
/// their threads named `{name}-client` and `{name}-mock`, so [`thread_cpu_secs`] tells the two
/// apart.
#[derive(Debug)]
pub struct Runtimes {
    mock: Runtime,
    client: Runtime,
    mock_threads: String,
    client_threads: String,
}

impl Runtimes {
    /// Builds both runtimes, with every driver enabled.
    ///
    /// # Panics
    ///
    /// If a runtime cannot be built.
    pub fn new(name: &str) -> Self {
        let (mock_threads, client_threads) = (format!("{name}-mock"), format!("{name}-client"));
        let runtime = |threads: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(threads)
                .enable_all()
                .build()
                .expect("a benchmark runtime")
        };
        Runtimes {
            mock: runtime(&mock_threads),
            client: runtime(&client_threads),
            mock_threads,
            client_threads,
        }
    }

    /// The fake's runtime: start the fake with `runtimes.mock().block_on(…)`.
    pub fn mock(&self) -> &Runtime {
        &self.mock
    }

    /// Warms up with pushes `0..warm_up` (the access token, the connections), then sends pushes
    /// `0..pushes` with [`send_all`] under the client runtime's `block_on`, at most `in_flight` at
    /// once, and measures that run ([`measure`]): the client's CPU is its runtime threads', the
    /// fake's its runtime threads'.
    ///
    /// # Panics
    ///
    /// If a warm-up push fails.
    pub fn run<F, Fut, T, E>(
        &self,
        pushes: usize,
        in_flight: usize,
        warm_up: usize,
        send: F,
    ) -> Report
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Debug,
    {
        self.client.block_on(async {
            let mut failed = stream::iter(0..warm_up)
                .map(&send)
                .buffer_unordered(in_flight)
                .filter_map(|r| ready(r.err()));
            if let Some(e) = failed.next().await {
                panic!("a warm-up push failed: {e:?}");
            }
        });
        // `block_on` polls the send futures on this thread (rendering, signing, the channel's
        // own work); only the connections' tasks run on the client's worker. Both are the
        // client's CPU.
        let report = measure(
            pushes,
            || Some(thread_cpu_secs(&self.client_threads)? + current_thread_cpu_secs()?),
            || thread_cpu_secs(&self.mock_threads),
            || self.client.block_on(send_all(pushes, in_flight, &send)),
        );
        Report { warm_up, ..report }
    }
}

/// How [`print_report`] names what was measured.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// The benchmark's name, which starts every line: `"fcm_bench"`.
    pub bench: &'a str,
    /// A variant, said in brackets after the name on the first line: `Some("HTTP/2")`.
    pub variant: Option<&'a str>,
    /// How many addresses the pushes went to.
    pub addresses: usize,
    /// What the addresses are, in the plural: `"tokens"`, `"channel URIs"`.
    pub address_noun: &'a str,
    /// Whether the fake's CPU line adds that wall time spent in neither the client nor the fake
    /// is waiting for a core.
    pub wait_note: bool,
}

/// Prints the report of a run on [`Runtimes`]: pushes, wall time and deliveries/s, failures and
/// the requests that reached the fake (`mock_requests`, the fake's request count after the run,
/// less one per warm-up push); then the client's CPU time and per delivery, and the fake's.
///
/// ```text
/// fcm_bench: 30000 pushes to 3000 tokens in 1.234 s: 24311 deliveries/s (0 failed, 30000 requests reached the mock)
/// fcm_bench: client CPU 0.52 s = 17.3 µs/delivery (the thread driving the sends and 1 client worker thread; 1 mock worker thread)
/// fcm_bench: mock CPU 0.51 s = 17.0 µs/delivery; wall time not spent in either is waiting for a core (check the load average)
/// ```
pub fn print_report(report: &Report, labels: &Labels<'_>, mock_requests: u64) {
    for line in report_lines(report, labels, mock_requests) {
        println!("{line}");
    }
}

fn report_lines(report: &Report, labels: &Labels<'_>, mock_requests: u64) -> Vec<String> {
    let bench = labels.bench;
    let variant = labels
        .variant
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{bench}{variant}: {} pushes to {} {} in {:.3} s: {:.0} deliveries/s ({} failed, {} \
         requests reached the mock)",
        report.pushes,
        labels.addresses,
        labels.address_noun,
        report.wall.as_secs_f64(),
        report.deliveries_per_sec(),
        report.failures,
        mock_requests.saturating_sub(report.warm_up as u64),
    )];
    lines.push(match report.client_cpu_secs {
        Some(cpu) => format!(
            "{bench}: client CPU {cpu:.2} s = {:.1} µs/delivery (the thread driving the sends and \
             1 client worker thread; 1 mock worker thread)",
            report.micros_per_push(cpu)
        ),
        None => format!("{bench}: client CPU not measured (no /proc)"),
    });
    if let Some(cpu) = report.mock_cpu_secs {
        let note = if labels.wait_note {
            "; wall time not spent in either is waiting for a core (check the load average)"
        } else {
            ""
        };
        lines.push(format!(
            "{bench}: mock CPU {cpu:.2} s = {:.1} µs/delivery{note}",
            report.micros_per_push(cpu)
        ));
    }
    lines
}

/// The command name and the CPU ticks (user + system) in the text of a `/proc/…/stat` file.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((stat.get(open + 1..close)?, utime + stime))
}

/// Clock ticks per second in `/proc/…/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process's threads whose name starts with
/// `prefix`; `None` where `/proc` is not there.
pub fn thread_cpu_secs(prefix: &str) -> Option<f64> {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue;
        };
        match parse_stat(&stat) {
            Some((name, t)) if name.starts_with(prefix) => ticks += t,
            _ => {}
        }
    }
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds (user + system) used so far by the calling thread; `None` where `/proc` is not
/// there.
pub fn current_thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds (user + system) used so far by the process `pid`, all its threads (finished ones
/// included); `None` where `/proc` is not there or has no such process. For this process, pass
/// `std::process::id()`.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks as f64 / TICKS_PER_SEC)
}

/// The 1, 5 and 15 minute load averages as text (`"unknown"` where `/proc` is not there).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            pushes: 30_000,
            warm_up: 1,
            failures: 2,
            wall: Duration::from_millis(1_500),
            client_cpu_secs: Some(0.51),
            mock_cpu_secs: Some(0.6),
        }
    }

    fn labels() -> Labels<'static> {
        Labels {
            bench: "x_bench",
            variant: None,
            addresses: 3_000,
            address_noun: "tokens",
            wait_note: true,
        }
    }

    #[test]
    fn the_report_is_printed_as_the_benchmarks_always_printed_it() {
        assert_eq!(
            report_lines(&report(), &labels(), 30_001),
            [
                "x_bench: 30000 pushes to 3000 tokens in 1.500 s: 20000 deliveries/s (2 failed, \
                 30000 requests reached the mock)",
                "x_bench: client CPU 0.51 s = 17.0 µs/delivery (the thread driving the sends and \
                 1 client worker thread; 1 mock worker thread)",
                "x_bench: mock CPU 0.60 s = 20.0 µs/delivery; wall time not spent in either is \
                 waiting for a core (check the load average)",
            ]
        );
        let labels = Labels {
            variant: Some("HTTP/2"),
            address_noun: "channel URIs",
            wait_note: false,
            ..labels()
        };
        let report = Report {
            warm_up: 256,
            client_cpu_secs: None,
            ..report()
        };
        assert_eq!(
            report_lines(&report, &labels, 30_256),
            [
                "x_bench (HTTP/2): 30000 pushes to 3000 channel URIs in 1.500 s: 20000 \
                 deliveries/s (2 failed, 30000 requests reached the mock)",
                "x_bench: client CPU not measured (no /proc)",
                "x_bench: mock CPU 0.60 s = 20.0 µs/delivery",
            ]
        );
    }

    #[test]
    fn pushes_go_to_the_addresses_in_turn() {
        let app = AppId::new("bench");
        let addresses: Vec<PushAddress> = (0..3)
            .map(|t| PushAddress::Fcm {
                token: format!("t{t}"),
            })
            .collect();
        let pushes = pushes(&app, &addresses, 7);
        assert_eq!(pushes.len(), 7);
        for (i, p) in pushes.iter().enumerate() {
            assert_eq!(p.endpoint.address, addresses[i % 3]);
            assert_eq!(p.endpoint.user, UserId::new(format!("user-{}", i % 3)));
            assert_eq!(p.sequence, i as u64 + 1);
            assert_eq!(p.collapse_id, format!("n{i}"));
            assert_eq!(p.app, app);
        }
    }

    /// A send that fails for every third push and records the most sends pending at once.
    fn counting_send(
        pending: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    ) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>
           + Send
           + Sync
           + 'static {
        move |i| {
            let (pending, most) = (pending.clone(), most.clone());
            Box::pin(async move {
                let now = pending.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                pending.fetch_sub(1, Ordering::SeqCst);
                if i % 3 == 0 {
                    Err(())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[test]
    fn the_drivers_send_every_push_with_a_bounded_number_in_flight() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for spawned in [false, true] {
            let (pending, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let send = counting_send(pending, most.clone());
            let failed = if spawned {
                rt.block_on(spawn_all(100, 8, send))
            } else {
                rt.block_on(send_all(100, 8, send))
            };
            assert_eq!(failed, 34, "pushes 0, 3, …, 99 fail (spawned: {spawned})");
            let most = most.load(Ordering::SeqCst);
            assert!(
                most <= 8 && most > 1,
                "{most} in flight (spawned: {spawned})"
            );
        }
    }

    #[test]
    fn a_run_on_runtimes_counts_the_warm_up_apart() {
        let runtimes = Runtimes::new("kit-bench");
        let sent = AtomicUsize::new(0);
        let report = runtimes.run(50, 4, 3, |i| {
            sent.fetch_add(1, Ordering::SeqCst);
            ready(if i < 40 { Ok(()) } else { Err(i) })
        });
        assert_eq!(sent.load(Ordering::SeqCst), 53);
        assert_eq!(
            (report.pushes, report.warm_up, report.failures),
            (50, 3, 10)
        );
        assert!(report.deliveries_per_sec() > 0.0);
    }

    #[test]
    #[should_panic(expected = "a warm-up push failed")]
    fn a_failed_warm_up_push_stops_the_run() {
        Runtimes::new("kit-bench").run(10, 4, 2, |i| ready(if i == 1 { Err(i) } else { Ok(()) }));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_time_is_counted_for_the_named_threads_only() {
        let burner = std::thread::Builder::new()
            .name("cpu-burner-1".into())
            .spawn(|| {
                // Spin until the kernel has charged this thread at least one tick.
                let mut x = 0u64;
                while thread_cpu_secs("cpu-burner").unwrap_or(0.0) == 0.0 {
                    for i in 0..1_000_000u64 {
                        x = x.wrapping_add(i ^ x.rotate_left(3));
                    }
                }
                x
            })
            .unwrap();
        burner.join().unwrap();
        assert_eq!(thread_cpu_secs("no-thread-has-this-name"), Some(0.0));
        // The burner has finished, but the process still counts its time.
        assert!(process_cpu_secs(std::process::id()).unwrap() > 0.0);
        assert_eq!(process_cpu_secs(u32::MAX), None);
        assert!(load_average().split_whitespace().count() == 3);
    }
}
