//! The scheduler tested in-process, as mini-redis tests its server: a real [`Scheduler`] on
//! a temp folder (real journal, real files), driven by [`Event`]s through `handle`, with
//! tokio's clock paused so that timeouts and backups are reached by `advance`, not sleeps.

use super::*;
use crate::apps::AppRef;
use crate::scheduler::AttemptCounts;
use std::time::Duration;
use tokio::time::advance;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    dir: tempfile::TempDir,
    config: CoordinatorConfig,
    scheduler: Scheduler,
}

fn config(dir: &std::path::Path) -> CoordinatorConfig {
    CoordinatorConfig {
        data_dir: dir.to_path_buf(),
        task_timeout: TIMEOUT,
        max_task_failures: 3,
        ..CoordinatorConfig::default()
    }
}

impl Fixture {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tune: impl FnOnce(&mut CoordinatorConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path());
        tune(&mut config);
        let scheduler = open(&config);
        Self {
            dir,
            config,
            scheduler,
        }
    }

    /// The coordinator restarted on the same folder.
    fn reopen(&mut self) {
        self.scheduler = open(&self.config);
    }

    fn handle(&self, event: Event) -> Reply {
        self.scheduler.handle(event).expect("journal write")
    }

    /// Submits a job of `maps` one-byte splits and `n_reduce` reduces; its id.
    fn submit(&self, id: &str, maps: u64, n_reduce: u32) -> String {
        self.submit_skipping(id, maps, n_reduce, 0)
    }

    /// [`Fixture::submit`] of a job that may skip `max_skipped_records` records.
    fn submit_skipping(
        &self,
        id: &str,
        maps: u64,
        n_reduce: u32,
        max_skipped_records: u64,
    ) -> String {
        self.submit_files(id, &[("input/a", maps)], 1, n_reduce, max_skipped_records)
    }

    /// Submits a job over `files` (name, size) cut into splits of at most `split_bytes`.
    fn submit_files(
        &self,
        id: &str,
        files: &[(&str, u64)],
        split_bytes: u64,
        n_reduce: u32,
        max_skipped_records: u64,
    ) -> String {
        std::fs::create_dir_all(self.scheduler.data().job_dir(id)).expect("job dir");
        let spec = JobSpec {
            app: AppRef {
                name: "wc".into(),
                sha256: "00".into(),
            },
            inputs: vec!["input/*".into()],
            input_files: files.iter().map(|&(f, n)| (f.into(), n)).collect(),
            n_reduce,
            split_bytes,
            max_skipped_records,
        };
        let reply = self.handle(Event::Submit {
            job_id: id.into(),
            spec,
        });
        assert!(matches!(reply, Reply::Submitted));
        id.into()
    }

    fn request(&self, worker: &str) -> Option<Assignment> {
        let mut tasks = self.request_batch(worker, 1);
        assert!(tasks.len() <= 1, "one task asked, {} given", tasks.len());
        tasks.pop()
    }

    fn request_batch(&self, worker: &str, max_tasks: u32) -> Vec<Assignment> {
        match self.handle(Event::Request {
            worker: worker.into(),
            max_tasks,
        }) {
            Reply::Task(tasks) => tasks,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn heartbeat(&self, attempt_ids: &[AttemptId]) -> Vec<bool> {
        match self.handle(Event::Heartbeat {
            attempt_ids: attempt_ids.to_vec(),
        }) {
            Reply::Heartbeat { wanted } => wanted,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Writes the attempt's files as a worker would (maps: no partition holds records).
    fn write_files(&self, a: &Assignment) -> Vec<u32> {
        if a.kind == TaskKind::Reduce {
            let out = self.scheduler.data().output(&a.job_id, a.index);
            std::fs::write(DataDir::attempt_tmp(&out, a.attempt_id), b"w 1\n").expect("write");
        }
        Vec::new()
    }

    fn report_ok(&self, worker: &str, a: &Assignment) -> bool {
        let partitions = self.write_files(a);
        self.report(
            worker,
            a.attempt_id,
            TaskResult::Succeeded {
                partitions,
                skipped: Vec::new(),
                counts: Default::default(),
            },
        )
    }

    /// Reports success of an attempt that skipped `skipped`.
    fn report_skipping(&self, worker: &str, a: &Assignment, skipped: &[StoredSkipped]) -> bool {
        let partitions = self.write_files(a);
        self.report(
            worker,
            a.attempt_id,
            TaskResult::Succeeded {
                partitions,
                skipped: skipped.to_vec(),
                counts: Default::default(),
            },
        )
    }

    fn report(&self, worker: &str, attempt_id: AttemptId, result: TaskResult) -> bool {
        let (accepted, _) = self.report_batch(worker, vec![(attempt_id, result)], 0);
        accepted == [true]
    }

    /// Reports several outcomes in one event; returns what was accepted and the next tasks.
    fn report_batch(
        &self,
        worker: &str,
        reports: Vec<(AttemptId, TaskResult)>,
        max_next: u32,
    ) -> (Vec<bool>, Vec<Assignment>) {
        match self.handle(Event::Report {
            worker: worker.into(),
            reports,
            max_next,
        }) {
            Reply::Report { accepted, next } => (accepted, next),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn job<R>(&self, id: &str, f: impl FnOnce(&Job) -> R) -> R {
        self.scheduler.with_job(id, f).expect("job")
    }

    fn deadline_check(&self) -> Vec<Cleanup> {
        match self.handle(Event::DeadlineCheck) {
            Reply::DeadlineChecked { cleanups } => cleanups,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Runs every task of every job to the end on one worker.
    fn run_all(&self, worker: &str) {
        while let Some(a) = self.request(worker) {
            assert!(self.report_ok(worker, &a));
        }
    }
}

fn open(config: &CoordinatorConfig) -> Scheduler {
    let data = DataDir::open(&config.data_dir).expect("data dir");
    Scheduler::open(config.clone(), data).expect("open")
}

fn failed(message: &str) -> TaskResult {
    TaskResult::Failed {
        kind: FailureKind::App,
        error: message.into(),
        bad_map_tasks: Vec::new(),
    }
}

fn task_states(job: &Job) -> Vec<(TaskKind, u32, TaskState)> {
    job.all_tasks()
        .map(|t| (t.kind, t.index, t.state))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn equal_maps_go_out_lowest_first_oldest_job_first_then_reduces() {
    let f = Fixture::new();
    f.submit("a", 2, 1);
    f.submit("b", 1, 1);
    let order: Vec<(String, TaskKind, u32)> = (0..3)
        .map(|_| {
            let a = f.request("w").expect("a task");
            (a.job_id, a.kind, a.index)
        })
        .collect();
    assert_eq!(
        order,
        [
            ("a".into(), TaskKind::Map, 0),
            ("a".into(), TaskKind::Map, 1),
            ("b".into(), TaskKind::Map, 0),
        ]
    );
    // Reduces wait for every map of their job.
    assert!(f.request("w").is_none());
    let running: Vec<AttemptId> = f.job("a", |j| j.maps.iter().map(|t| t.attempts[0].id).collect());
    for id in running {
        f.report(
            "w",
            id,
            TaskResult::Succeeded {
                partitions: vec![],
                skipped: vec![],
                counts: Default::default(),
            },
        );
    }
    let next = f.request("w").expect("a's reduce");
    assert_eq!(
        (next.job_id.as_str(), next.kind, next.index),
        ("a", TaskKind::Reduce, 0)
    );
    assert_eq!(f.job("a", |j| j.state), JobState::Running);
    assert_eq!(f.job("b", |j| j.progress(TaskKind::Map).in_progress), 1);
}

#[tokio::test(start_paused = true)]
async fn maps_go_out_largest_split_first_and_a_retried_one_keeps_its_place() {
    let f = Fixture::new();
    // Splits of at most 100 bytes: map 0 = a[0..100], 1 = a[100..130], 2 = b (70),
    // 3 = c[0..100], 4 = c[100..200], 5 = d (30).
    f.submit_files(
        "j",
        &[
            ("input/a", 130),
            ("input/b", 70),
            ("input/c", 200),
            ("input/d", 30),
        ],
        100,
        1,
        0,
    );
    let sizes: Vec<u64> = f.job("j", |j| {
        j.maps
            .iter()
            .map(|t| t.split.as_ref().expect("a map's split").length)
            .collect()
    });
    assert_eq!(sizes, [100, 30, 70, 100, 100, 30]);
    let first = f.request("w").expect("a map");
    let second = f.request("w").expect("a map");
    assert_eq!((first.index, second.index), (0, 3));
    // A failed map goes back among the Idle ones by its size, ahead of smaller splits.
    assert!(f.report("w", first.attempt_id, failed("trap")));
    let order: Vec<u32> = std::iter::from_fn(|| f.request("w"))
        .map(|a| a.index)
        .collect();
    assert_eq!(order, [0, 4, 2, 1, 5]);
}

#[tokio::test(start_paused = true)]
async fn late_and_duplicate_reports_are_fenced_off() {
    let f = Fixture::new();
    f.submit("j", 1, 1);
    let first = f.request("w1").expect("map");
    advance(TIMEOUT + Duration::from_millis(1)).await;
    f.deadline_check();
    let second = f.request("w2").expect("the map again");
    assert_eq!((second.kind, second.index), (TaskKind::Map, 0));
    assert_ne!(first.attempt_id, second.attempt_id);
    // The timed-out attempt's report changes nothing.
    assert!(!f.report_ok("w1", &first));
    assert_eq!(f.job("j", |j| j.maps[0].state), TaskState::InProgress);
    assert!(f.report_ok("w2", &second));
    // A duplicate of an accepted report is not accepted twice, and an unknown id is ignored.
    assert!(!f.report_ok("w2", &second));
    assert!(!f.report("w3", 999_999, failed("who?")));
    let outcomes: Vec<AttemptOutcome> = f.job("j", |j| {
        j.maps[0].attempts.iter().map(|a| a.outcome).collect()
    });
    assert_eq!(
        outcomes,
        [AttemptOutcome::TimedOut, AttemptOutcome::Succeeded]
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_attempt_alive_and_silence_times_it_out() {
    let f = Fixture::new();
    f.submit("j", 1, 1);
    let a = f.request("w").expect("map");
    for _ in 0..5 {
        advance(TIMEOUT / 2).await;
        assert_eq!(f.heartbeat(&[a.attempt_id]), [true]);
        f.deadline_check();
    }
    assert_eq!(f.job("j", |j| j.maps[0].state), TaskState::InProgress);
    let next = f.scheduler.next_wakeup().expect("a deadline");
    advance(next.saturating_duration_since(Instant::now()) + TIMEOUT).await;
    f.deadline_check();
    let (state, outcome, failures) = f.job("j", |j| {
        (
            j.maps[0].state,
            j.maps[0].attempts[0].outcome,
            j.maps[0].failures,
        )
    });
    assert_eq!(state, TaskState::Idle);
    assert_eq!(outcome, AttemptOutcome::TimedOut);
    assert_eq!(failures, 0, "a lost worker does not count against the task");
    assert_eq!(f.heartbeat(&[a.attempt_id]), [false]);
}

#[tokio::test(start_paused = true)]
async fn a_straggler_gets_a_backup_and_the_first_report_wins() {
    let f = Fixture::new();
    f.submit("j", 3, 1);
    let tasks: Vec<Assignment> = (0..3).map(|_| f.request("fast").expect("map")).collect();
    advance(Duration::from_millis(100)).await;
    assert!(f.report_ok("fast", &tasks[0]));
    assert!(f.report_ok("fast", &tasks[1]));
    // Not yet a straggler: no backup, and never on the worker that runs it.
    assert!(f.request("other").is_none());
    advance(Duration::from_secs(2)).await;
    f.heartbeat(&[tasks[2].attempt_id]);
    assert!(f.request("fast").is_none());
    let backup = f.request("other").expect("a backup copy");
    assert_eq!((backup.kind, backup.index), (TaskKind::Map, 2));
    // One backup per task.
    assert!(f.request("third").is_none());
    assert!(f.report_ok("other", &backup));
    assert!(!f.report_ok("fast", &tasks[2]));
    let history: Vec<(AttemptOutcome, bool)> = f.job("j", |j| {
        j.maps[2]
            .attempts
            .iter()
            .map(|a| (a.outcome, a.backup))
            .collect()
    });
    assert_eq!(
        history,
        [
            (AttemptOutcome::Superseded, false),
            (AttemptOutcome::Succeeded, true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_that_keeps_failing_fails_its_job_with_a_named_error() {
    let f = Fixture::new();
    f.submit("j", 1, 1);
    for attempt in 1..=3 {
        let a = f.request("w").expect("the map");
        assert!(f.report("w", a.attempt_id, failed(&format!("trap {attempt}"))));
    }
    let (state, error) = f.job("j", |j| (j.state, j.error.clone()));
    assert_eq!(state, JobState::Failed);
    assert!(
        error.contains("map-0") && error.contains("'wc'") && error.contains("trap 3"),
        "{error}"
    );
    assert!(f.request("w").is_none());
    // Lost intermediates do not count: a reduce's bad-file report re-runs the map instead.
    f.submit("k", 1, 1);
    let map = f.request("w").expect("map");
    assert!(f.report_ok("w", &map));
    let reduce = f.request("w").expect("reduce");
    let bad = TaskResult::Failed {
        kind: FailureKind::BadIntermediate,
        error: "mr-0-0: checksum".into(),
        bad_map_tasks: vec![0],
    };
    assert!(f.report("w", reduce.attempt_id, bad));
    let (maps, failures) = f.job("k", |j| (j.maps[0].state, j.reduces[0].failures));
    assert_eq!((maps, failures), (TaskState::Idle, 0));
    assert_eq!(f.request("w").map(|a| a.kind), Some(TaskKind::Map));
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_running_attempts_and_is_answered_once() {
    let f = Fixture::new();
    f.submit("j", 2, 1);
    let a = f.request("w").expect("map");
    let reply = f.handle(Event::Cancel { job_id: "j".into() });
    assert!(matches!(reply, Reply::Cancel(CancelOutcome::Cancelled)));
    assert_eq!(f.heartbeat(&[a.attempt_id]), [false]);
    assert!(!f.report_ok("w", &a));
    assert!(f.request("w").is_none());
    let reply = f.handle(Event::Cancel { job_id: "j".into() });
    assert!(matches!(
        reply,
        Reply::Cancel(CancelOutcome::AlreadyEnded(JobState::Cancelled))
    ));
    let reply = f.handle(Event::Cancel {
        job_id: "nope".into(),
    });
    assert!(matches!(reply, Reply::Cancel(CancelOutcome::UnknownJob)));
    let cleanups = f.deadline_check();
    assert_eq!(
        cleanups,
        [Cleanup {
            job_id: "j".into(),
            scope: CleanupScope::Everything
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_coordinator_has_exactly_the_acknowledged_state() {
    let mut f = Fixture::new();
    f.submit("j", 3, 2);
    let done = f.request("w").expect("map 0");
    assert!(f.report_ok("w", &done));
    let running = f.request("w").expect("map 1");
    let failing = f.request("w").expect("map 2");
    assert!(f.report("w", failing.attempt_id, failed("boom")));
    let before = f.job("j", task_states);
    f.reopen();
    assert_eq!(f.job("j", task_states), before);
    assert_eq!(f.job("j", |j| j.maps[2].failures), 1);
    // The running attempt's worker may still report, and is heard.
    assert!(f.report_ok("w", &running));
    // Attempt ids are never reused.
    let next = f.request("w").expect("map 2 again");
    assert!(next.attempt_id > failing.attempt_id);
}

#[tokio::test(start_paused = true)]
async fn recovery_finishes_an_interrupted_commit_and_reruns_lost_outputs() {
    let mut f = Fixture::new();
    f.submit("k", 1, 2);
    let map = f.request("w").expect("map");
    assert!(f.report_ok("w", &map));
    let r0 = f.request("w").expect("reduce 0");
    let _r1 = f.request("w").expect("reduce 1");
    assert!(f.report_ok("w", &r0));
    // Killed between journaling reduce 0's commit and renaming its file into place.
    let out0 = f.scheduler.data().output("k", 0);
    std::fs::rename(&out0, DataDir::attempt_tmp(&out0, r0.attempt_id)).expect("un-rename");
    f.reopen();
    assert!(out0.exists(), "the interrupted commit was finished");
    assert_eq!(f.job("k", |j| j.reduces[0].state), TaskState::Completed);
    // An output lost altogether: its task runs again.
    std::fs::remove_file(&out0).expect("remove");
    f.reopen();
    assert_eq!(f.job("k", |j| j.reduces[0].state), TaskState::Idle);
    let again = f.request("w").expect("reduce 0 again");
    assert_eq!((again.kind, again.index), (TaskKind::Reduce, 0));
}

#[tokio::test(start_paused = true)]
async fn compaction_keeps_the_state_and_a_crash_at_any_step_loses_nothing() {
    let mut f = Fixture::with(|c| c.compact_after_bytes = 2_000);
    f.submit("done", 2, 1);
    f.run_all("w");
    f.submit("live", 40, 2);
    for _ in 0..30 {
        let a = f.request("w").expect("map");
        assert!(f.report_ok("w", &a));
    }
    let running = f.request("w").expect("map");
    let (tail, snapshot) = f.scheduler.journal_sizes();
    assert!(snapshot > 0, "compacted at least once");
    assert!(
        tail < 2_000.max(snapshot) + 1_000,
        "tail {tail}, snapshot {snapshot}"
    );
    let before = f.job("live", task_states);
    f.reopen();
    assert_eq!(f.job("live", task_states), before);
    assert_eq!(f.job("done", |j| j.state), JobState::Succeeded);
    assert!(f.report_ok("w", &running));
    // A crash at each step of a compaction: the journal's unit tests stop after every
    // step, and e2e `a_kill_at_any_step_of_a_compaction_loses_nothing` SIGKILLs there.
}

#[tokio::test(start_paused = true)]
async fn ended_jobs_are_summarised_then_forgotten_with_their_folders() {
    let mut f = Fixture::with(|c| {
        c.job_detail_retention = Duration::ZERO;
        c.max_retained_jobs = 2;
    });
    for id in ["a", "b", "c"] {
        f.submit(id, 1, 1);
        f.run_all("w");
    }
    assert!(f.scheduler.data().job_dir("a").exists());
    // A restart compacts: ended jobs keep their summary only.
    f.reopen();
    let (archived, state, maps) = f.job("c", |j| (j.archived, j.state, j.progress(TaskKind::Map)));
    assert!(archived);
    assert_eq!(state, JobState::Succeeded);
    assert_eq!((maps.total, maps.completed), (1, 1));
    // Beyond max_retained_jobs the oldest is forgotten, and its folder goes.
    let cleanups = f.deadline_check();
    for cleanup in &cleanups {
        clean_job_dir(f.scheduler.data(), &f.scheduler.config().storage, cleanup);
    }
    assert!(!f.scheduler.contains("a"));
    assert!(f.scheduler.contains("b") && f.scheduler.contains("c"));
    assert!(!f.scheduler.data().job_dir("a").exists());
    assert!(f.scheduler.data().output("c", 0).exists());
    f.reopen();
    assert!(!f.scheduler.contains("a"), "forgetting is durable");
}

#[tokio::test(start_paused = true)]
async fn a_job_of_fifty_thousand_tasks_costs_log_n_per_event() {
    let f = Fixture::with(|c| c.compact_after_bytes = u64::MAX);
    f.submit("big", 50_000, 1);
    let mut handed = 0;
    while let Some(a) = f.request("w") {
        assert!(f.report_ok("w", &a));
        handed += 1;
    }
    assert_eq!(handed, 50_001);
    assert_eq!(f.job("big", |j| j.state), JobState::Succeeded);
    let _ = &f.dir;
}

fn line(offset: u64) -> StoredSkipped {
    StoredSkipped {
        input: "input/a".into(),
        offset,
        error: "app `wc` failed: poisoned".into(),
        ..StoredSkipped::default()
    }
}

fn skipped_of(job: &Job) -> (u64, Vec<StoredSkipped>) {
    let listed = job.skipped(usize::MAX).map(|(_, s)| s.clone()).collect();
    (job.skipped_records, listed)
}

/// Skipped records count only once their attempt is committed (never a failed, superseded
/// or duplicate one), survive restarts (journal and snapshot), and are held to the budget.
#[tokio::test(start_paused = true)]
async fn skipped_records_count_on_commit_only_survive_restarts_and_keep_to_the_budget() {
    let mut f = Fixture::new();
    f.submit_skipping("s", 3, 1, 2);
    let first = f.request("w1").expect("map 0");
    assert_eq!(first.skip_budget, 2);
    // Map 0's first attempt times out; its late report's skips never count.
    advance(TIMEOUT + Duration::from_millis(1)).await;
    f.deadline_check();
    let second = f.request("w2").expect("map 0 again");
    assert_eq!(second.index, 0);
    assert!(!f.report_skipping("w1", &first, &[line(1), line(2)]));
    assert_eq!(f.job("s", skipped_of), (0, vec![]));
    // The winning attempt's skip counts, once: a duplicate report is not accepted.
    assert!(f.report_skipping("w2", &second, &[line(10)]));
    assert!(!f.report_skipping("w2", &second, &[line(10)]));
    assert_eq!(f.job("s", skipped_of), (1, vec![line(10)]));
    // Later assignments get what is left of the budget.
    let map1 = f.request("w1").expect("map 1");
    assert_eq!(map1.skip_budget, 1);
    // Two more would go past the budget of 2: the attempt fails as the app's error,
    // counted against the task, naming the record; nothing of it is recorded.
    assert!(f.report_skipping("w1", &map1, &[line(20), line(30)]));
    let (state, failures, error) = f.job("s", |j| {
        let t = &j.maps[1];
        (t.state, t.failures, t.attempts[0].error.clone())
    });
    assert_eq!((state, failures), (TaskState::Idle, 1));
    assert!(
        error.contains("input/a@30") && error.contains("max_skipped_records = 2"),
        "{error}"
    );
    assert_eq!(f.job("s", skipped_of), (1, vec![line(10)]));
    // Journal replay, then the snapshot the restart compacted to: the same records.
    for _ in 0..2 {
        f.reopen();
        assert_eq!(f.job("s", skipped_of), (1, vec![line(10)]));
    }
    let map1 = f.request("w1").expect("map 1 again");
    assert_eq!((map1.index, map1.skip_budget), (1, 1));
    assert!(f.report_skipping("w1", &map1, &[line(20)]));
    assert_eq!(f.job("s", skipped_of), (2, vec![line(10), line(20)]));
    let map2 = f.request("w1").expect("map 2");
    assert_eq!(map2.skip_budget, 0);
    // A task reset (its intermediates lost) drops its skips until it commits again.
    assert!(f.report_ok("w1", &map2));
    let reduce = f.request("w1").expect("reduce");
    assert!(f.report(
        "w1",
        reduce.attempt_id,
        TaskResult::Failed {
            kind: FailureKind::BadIntermediate,
            error: "lost".into(),
            bad_map_tasks: vec![0],
        }
    ));
    assert_eq!(f.job("s", skipped_of), (1, vec![line(20)]));
    f.run_all("w1");
    assert_eq!(f.job("s", |j| j.state), JobState::Succeeded);
    // An ended job's summary keeps the count.
    f.reopen();
    assert_eq!(f.job("s", |j| j.skipped_records), 1);
}

#[tokio::test(start_paused = true)]
async fn small_maps_come_in_batches_that_shrink_towards_the_end_of_the_phase() {
    let f = Fixture::new();
    f.submit("j", 200, 2);
    // One task asked, one given.
    let first = f.request("w").expect("map");
    assert_eq!(first.index, 0);
    // 199 Idle left: a batch of 16 consecutive maps, each its own attempt.
    let batch = f.request_batch("w", 16);
    assert_eq!(batch.len(), 16);
    let indices: Vec<u32> = batch.iter().map(|a| a.index).collect();
    assert_eq!(indices, (1..17).collect::<Vec<_>>());
    let mut attempts: Vec<AttemptId> = batch.iter().map(|a| a.attempt_id).collect();
    attempts.dedup();
    assert_eq!(attempts.len(), 16, "one attempt per task");
    assert_eq!(f.job("j", |j| j.progress(TaskKind::Map).in_progress), 17);
    // Never more than an eighth of what is left, however much is asked.
    let mut sizes = Vec::new();
    loop {
        let batch = f.request_batch("w", 64);
        if batch.is_empty() {
            break;
        }
        assert!(batch.iter().all(|a| a.kind == TaskKind::Map));
        sizes.push(batch.len());
    }
    assert_eq!(sizes.iter().sum::<usize>(), 200 - 17);
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&1), "the last Idle maps go one by one");
    assert!(sizes[0] <= 183 / 8 + 1, "{sizes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_batch_holds_at_most_batch_bytes_and_reduces_go_one_at_a_time() {
    let f = Fixture::with(|c| c.batch_bytes = 4);
    f.submit("j", 100, 3);
    // One-byte splits: 4 of them fill the budget.
    let batch = f.request_batch("w", 16);
    assert_eq!(batch.len(), 4);
    let f = Fixture::with(|c| c.batch_bytes = 0);
    f.submit("j", 100, 3);
    assert_eq!(
        f.request_batch("w", 16).len(),
        1,
        "batch_bytes 0: no batches"
    );

    let f = Fixture::new();
    f.submit("j", 1, 3);
    let map = f.request("w").expect("map");
    assert!(f.report_ok("w", &map));
    let reduces = f.request_batch("w", 16);
    assert_eq!(reduces.len(), 1);
    assert_eq!(reduces[0].kind, TaskKind::Reduce);
}

#[tokio::test(start_paused = true)]
async fn a_batch_report_commits_each_current_attempt_and_brings_the_next_batch() {
    let f = Fixture::new();
    f.submit("j", 300, 1);
    let batch = f.request_batch("w", 8);
    assert_eq!(batch.len(), 8);
    // The first task times out and runs elsewhere: its late report is refused, the others
    // are committed, all in one event.
    advance(TIMEOUT / 2).await;
    let kept: Vec<AttemptId> = batch[1..].iter().map(|a| a.attempt_id).collect();
    assert_eq!(f.heartbeat(&kept), [true; 7]);
    advance(TIMEOUT / 2 + Duration::from_millis(1)).await;
    f.deadline_check();
    let ok = || TaskResult::Succeeded {
        partitions: Vec::new(),
        skipped: Vec::new(),
        counts: Default::default(),
    };
    let reports = batch.iter().map(|a| (a.attempt_id, ok())).collect();
    let (accepted, next) = f.report_batch("w", reports, 8);
    assert!(!accepted[0], "the timed-out attempt");
    assert!(accepted[1..].iter().all(|&a| a));
    assert_eq!(
        f.job("j", |j| j.progress(TaskKind::Map).completed),
        7,
        "every other report committed"
    );
    assert_eq!(next.len(), 8, "the reply carries the next batch");
    assert_eq!(next[0].index, 0, "the timed-out task first");
    // A duplicate of the same batch changes nothing.
    let reports = batch.iter().map(|a| (a.attempt_id, ok())).collect();
    let (accepted, next) = f.report_batch("w", reports, 0);
    assert!(accepted.iter().all(|&a| !a));
    assert!(next.is_empty(), "max_next 0: no task handed out");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_queued_attempts_alive_and_name_the_dropped_ones() {
    let f = Fixture::new();
    f.submit("j", 100, 1);
    let batch = f.request_batch("w", 4);
    let ids: Vec<AttemptId> = batch.iter().map(|a| a.attempt_id).collect();
    for _ in 0..4 {
        advance(TIMEOUT / 2).await;
        assert_eq!(f.heartbeat(&ids), [true; 4]);
        f.deadline_check();
    }
    assert_eq!(f.job("j", |j| j.progress(TaskKind::Map).in_progress), 4);
    // The job is cancelled: none of them is wanted any more.
    f.scheduler
        .handle(Event::Cancel { job_id: "j".into() })
        .expect("cancel");
    assert_eq!(f.heartbeat(&ids), [false; 4]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_ends_the_job_ends_it_once() {
    let f = Fixture::new();
    f.submit("j", 1, 2);
    let map = f.request("w").expect("map");
    assert!(f.report_ok("w", &map));
    let a = f.request("w").expect("reduce 0");
    let b = f.request("w").expect("reduce 1");
    for r in [&a, &b] {
        f.write_files(r);
    }
    let ok = || TaskResult::Succeeded {
        partitions: Vec::new(),
        skipped: Vec::new(),
        counts: Default::default(),
    };
    let (accepted, _) = f.report_batch("w", vec![(a.attempt_id, ok()), (b.attempt_id, ok())], 0);
    assert_eq!(accepted, [true, true]);
    assert_eq!(f.job("j", |j| j.state), JobState::Succeeded);
    let journal =
        std::fs::read_to_string(f.dir.path().join(".mr").join("journal")).expect("journal");
    assert_eq!(journal.matches("\"JobEnded\"").count(), 1, "{journal}");
    let mut f = f;
    f.reopen();
    assert_eq!(f.job("j", |j| j.state), JobState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn counters_count_committed_attempts_once_through_reruns_and_restarts() {
    use crate::scheduler::commit::counter;
    let mut f = Fixture::new();
    f.submit("j", 2, 1);
    let counting = |x: u64, out: u64| TaskResult::Succeeded {
        partitions: Vec::new(),
        skipped: Vec::new(),
        counts: AttemptCounts {
            records_in: 1,
            records_out: out,
            output_bytes: 0,
            user: [("x".to_string(), x), ("mr.forged".to_string(), 99)].into(),
        },
    };
    let get = |f: &Fixture, name: &str| f.job("j", |j| j.counters.get(name).copied().unwrap_or(0));
    // A failed attempt counts nothing; the one committed counts once, a duplicate of its
    // report not at all, and the app cannot forge a built-in.
    let a0 = f.request("w").expect("map 0");
    let error = TaskResult::Failed {
        kind: FailureKind::App,
        error: "boom".into(),
        bad_map_tasks: Vec::new(),
    };
    assert!(f.report("w", a0.attempt_id, error));
    let a1 = f.request("w").expect("map 0 again");
    assert_eq!(a1.index, 0);
    assert!(f.report("w", a1.attempt_id, counting(5, 3)));
    assert!(!f.report("w", a1.attempt_id, counting(5, 3)));
    assert_eq!(get(&f, "x"), 5);
    assert_eq!(get(&f, counter::MAP_OUTPUT_RECORDS), 3);
    assert_eq!(get(&f, counter::MAP_INPUT_BYTES), 1, "one-byte split");
    assert_eq!(get(&f, "mr.forged"), 0);
    let m1 = f.request("w").expect("map 1");
    assert!(f.report("w", m1.attempt_id, counting(2, 1)));
    assert_eq!(get(&f, "x"), 7);
    // The reduce finds map 0's output lost: map 0's count goes with its commit, and its
    // re-run counts instead.
    let r = f.request("w").expect("reduce");
    let lost = TaskResult::Failed {
        kind: FailureKind::BadIntermediate,
        error: "mr-0-0 missing".into(),
        bad_map_tasks: vec![0],
    };
    assert!(f.report("w", r.attempt_id, lost));
    assert_eq!(get(&f, "x"), 2);
    let again = f.request("w").expect("map 0, third time");
    assert!(f.report("w", again.attempt_id, counting(5, 3)));
    assert_eq!(get(&f, "x"), 7);
    let r = f.request("w").expect("reduce again");
    f.write_files(&r);
    let reduced = TaskResult::Succeeded {
        partitions: Vec::new(),
        skipped: Vec::new(),
        counts: AttemptCounts {
            records_in: 4,
            records_out: 2,
            output_bytes: 40,
            user: Default::default(),
        },
    };
    assert!(f.report("w", r.attempt_id, reduced));
    assert_eq!(f.job("j", |j| j.state), JobState::Succeeded);
    let expected: Vec<(String, u64)> = vec![
        (counter::MAP_INPUT_BYTES.into(), 2),
        (counter::MAP_OUTPUT_RECORDS.into(), 4),
        (counter::OUTPUT_BYTES.into(), 40),
        (counter::REDUCE_GROUPS.into(), 2),
        (counter::REDUCE_INPUT_RECORDS.into(), 4),
        ("x".into(), 7),
    ];
    let now = |f: &Fixture| f.job("j", |j| j.counters.clone().into_iter().collect::<Vec<_>>());
    assert_eq!(now(&f), expected);
    // Replayed from the journal, then from the snapshot as an archived summary: the same.
    f.reopen();
    assert_eq!(now(&f), expected);
    assert!(f.job("j", |j| j.archived));
    f.reopen();
    assert_eq!(now(&f), expected);
}
