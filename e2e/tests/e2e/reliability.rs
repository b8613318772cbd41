//! Faults against real processes: the coordinator killed and restarted, workers killed
//! every half second, stalled workers beaten by backup tasks, corrupt intermediates, no
//! workers at all, a full disk, reduces with more inputs than a worker may open files.
//! Every output is compared with the sequential reference.
//! The faults that touch stored data run on both storages (`reliability::{folder,s3}::*`).

use mr_e2e::v1 as pb;
use mr_e2e::{
    Cluster, ClusterOptions, TestStorage, assert_same_lines, files_under, write_big_inputs,
    write_one_line_inputs,
};
use std::time::Duration;

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

async fn get(cluster: &Cluster, job_id: &str) -> Option<pb::Job> {
    let channel = cluster.channel().await.ok()?;
    mr_proto_client(channel)
        .get_job(pb::GetJobRequest {
            job_id: job_id.into(),
            ..Default::default()
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

fn mr_proto_client(
    channel: tonic::transport::Channel,
) -> pb::job_service_client::JobServiceClient<tonic::transport::Channel> {
    pb::job_service_client::JobServiceClient::new(channel)
}

/// Waits (polling, as the coordinator may be away) until `check` holds for the job.
async fn wait_for(
    cluster: &Cluster,
    job_id: &str,
    what: &str,
    check: impl Fn(&pb::Job) -> bool,
) -> pb::Job {
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    loop {
        if let Some(job) = get(cluster, job_id).await
            && check(&job)
        {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The big one: tens of MiB of wc while the coordinator is SIGKILLed and restarted once
/// and a worker is SIGKILLed every half second. The output is exact, and nothing is left
/// in the data folder but the inputs, the outputs and the coordinator's store.
async fn output_is_exact_through_a_coordinator_restart_and_constant_worker_kills(
    storage: TestStorage,
) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        task_timeout: "2s".into(),
        storage,
        ..Default::default()
    })
    .await;
    let inputs = write_big_inputs(&cluster.data, 4, 3);
    let job_id = cluster
        .submit_request(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: vec!["input/big/*.txt".into()],
            n_reduce: 6,
            split_bytes: 1 << 20,
            max_skipped_records: 0,
        })
        .await;
    let port = cluster.port();
    let mut restarted = false;
    let mut kills = 0;
    let deadline = tokio::time::Instant::now() + JOB_TIMEOUT;
    let job = loop {
        let job = get(&cluster, &job_id).await;
        if let Some(job) = &job {
            if mr_e2e::is_terminal(job.state()) {
                break job.clone();
            }
            let maps = job.map.unwrap_or_default();
            if !restarted && maps.completed * 3 >= maps.total {
                cluster.kill_coordinator();
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster.start_coordinator(port).await;
                restarted = true;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "job did not finish");
        let live = cluster.live_workers();
        cluster.signal_worker(live[kills % live.len()], libc::SIGKILL);
        cluster.spawn_worker();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(restarted, "the coordinator was restarted mid-job");
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &inputs),
        "wc through faults",
    );
    eprintln!("{kills} worker kills, one coordinator restart");

    // The coordinator cleans up once the job is done; workers clean up after themselves.
    for i in cluster.live_workers() {
        cluster.signal_worker(i, libc::SIGTERM);
        cluster.wait_worker(i, Duration::from_secs(10));
    }
    let expected_outputs: Vec<String> = (0..6)
        .map(|y| format!("jobs/{job_id}/mr-out-{y}"))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = files_under(&cluster.data)
            .into_iter()
            .filter(|f| !f.starts_with("input/") && !f.starts_with(".mr/"))
            .collect();
        if left == expected_outputs {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind besides outputs: {:?}",
            left.iter()
                .filter(|f| !expected_outputs.contains(f))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = files_under(&cluster.data.join(".mr"));
    assert!(
        store
            .iter()
            .all(|f| f == "journal" || f == "snapshot" || f.starts_with("apps/")),
        "{store:?}"
    );

    // Restarting again recovers the finished job as it was.
    cluster.kill_coordinator();
    cluster.start_coordinator(port).await;
    let again = get(&cluster, &job_id)
        .await
        .expect("job known after restart");
    assert_eq!(again.state(), pb::JobState::Succeeded);
    assert_eq!(again.outputs, job.outputs);
}

/// A worker stalls (SIGSTOP) holding a task, with a task timeout far away: a backup copy
/// finishes the task instead, and the stalled worker's late report, once it wakes, is
/// ignored.
async fn a_stalled_task_gets_a_backup_copy_and_the_late_report_is_ignored(storage: TestStorage) {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 3,
        task_timeout: "120s".into(),
        storage,
        ..Default::default()
    })
    .await;
    let inputs = mr_e2e::lab_inputs();
    let job_id = cluster
        .submit("mtiming", &["input/pg-*.txt".into()], 2)
        .await;
    let started = std::time::Instant::now();
    // Stall worker-0 as soon as it holds a map task.
    let job = wait_for(&cluster, &job_id, "worker-0 holding a task", |job| {
        job.tasks
            .iter()
            .any(|t| t.state() == pb::TaskState::InProgress && t.worker == "worker-0")
    })
    .await;
    cluster.signal_worker(0, libc::SIGSTOP);
    let stalled: Vec<u32> = job
        .tasks
        .iter()
        .filter(|t| t.state() == pb::TaskState::InProgress && t.worker == "worker-0")
        .map(|t| t.index)
        .collect();
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "finished long before the 120 s timeout"
    );
    let stalled_task = job
        .tasks
        .iter()
        .find(|t| t.kind() == pb::TaskKind::Map && stalled.contains(&t.index))
        .expect("the stalled task");
    let history = &stalled_task.history;
    assert!(
        history.iter().any(|a| a.backup
            && a.outcome() == pb::AttemptOutcome::Succeeded
            && a.worker != "worker-0"),
        "a backup copy won: {history:?}"
    );
    assert!(
        history
            .iter()
            .any(|a| a.worker == "worker-0" && a.outcome() == pb::AttemptOutcome::Superseded),
        "the stalled attempt lost: {history:?}"
    );
    let at_done = cluster.output_lines(&job);
    assert_same_lines(&at_done, &cluster.reference("mtiming", &inputs), "mtiming");

    // Wake the stalled worker: its attempt finishes and reports, and is ignored.
    cluster.signal_worker(0, libc::SIGCONT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cluster
        .coordinator_log()
        .contains("late report of a superseded attempt ignored")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no late report seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster.output_lines(&job),
        at_done,
        "a late report changed the output"
    );
    mr_e2e::assert_no_temp_files(&cluster.data);
}

/// A reduce finds an intermediate corrupt: it says which map made it, that map runs again,
/// and the output is still exact.
async fn a_corrupt_intermediate_makes_its_map_task_run_again(storage: TestStorage) {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        // Keep the intermediates around after the job, to look at them.
        coordinator_args: vec!["--intermediate-retention".into(), "1h".into()],
        storage,
        ..Default::default()
    })
    .await;
    let inputs = mr_e2e::lab_inputs();
    // rtiming's reduces take a second per key: the second one starts well after the maps end.
    let job_id = cluster
        .submit("rtiming", &["input/pg-*.txt".into()], 2)
        .await;
    wait_for(&cluster, &job_id, "the map phase to end", |job| {
        job.map.as_ref().is_some_and(|m| m.completed == m.total)
    })
    .await;
    let victim = cluster.data.join(format!("jobs/{job_id}/mr-3-1"));
    let mut bytes = std::fs::read(&victim).expect("read intermediate");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&victim, &bytes).expect("corrupt intermediate");

    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("rtiming", &inputs),
        "rtiming",
    );
    let map3 = job
        .tasks
        .iter()
        .find(|t| t.kind() == pb::TaskKind::Map && t.index == 3)
        .expect("map 3");
    assert_eq!(map3.attempts, 2, "map 3 ran again");
    let reduce1 = job
        .tasks
        .iter()
        .find(|t| t.kind() == pb::TaskKind::Reduce && t.index == 1)
        .expect("reduce 1");
    assert!(
        reduce1
            .history
            .iter()
            .any(|a| a.error.contains("map tasks [3]")),
        "{:?}",
        reduce1.history
    );
    assert_ne!(std::fs::read(&victim).expect("read"), bytes, "rewritten");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_workers_says_so_then_fails_after_the_set_time() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 0,
        coordinator_args: [
            "--no-worker-grace",
            "1s",
            "--fail-without-workers-after",
            "4s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 1)
        .await;
    let warned = wait_for(&cluster, &job_id, "a warning", |job| {
        !job.warning.is_empty()
    })
    .await;
    assert_eq!(warned.state(), pb::JobState::Pending);
    assert!(warned.warning.contains("no worker"), "{}", warned.warning);
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Failed);
    assert!(job.error.contains("no worker"), "{}", job.error);
    assert!(cluster.coordinator_log().contains("job is stuck"));
}

/// A worker whose disk is full (here: a file size limit, so writes fail with EFBIG) fails
/// its tasks with a clear error; the job fails instead of hanging or listing partial output.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_job_with_a_clear_error() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 1,
        worker_file_size_limit: Some(16 << 10),
        coordinator_args: vec!["--max-task-failures".into(), "2".into()],
        ..Default::default()
    })
    .await;
    let job_id = cluster
        .submit("wc", &["input/pg-grimm.txt".into()], 1)
        .await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(job.state(), pb::JobState::Failed);
    assert!(job.error.contains("File too large"), "{}", job.error);
    assert!(
        job.error.contains("mr-0-0"),
        "names the file: {}",
        job.error
    );
    assert!(job.outputs.is_empty());

    // An unwritable jobs folder is refused at submission, with the reason.
    std::fs::remove_dir_all(cluster.data.join("jobs")).expect("rm jobs");
    std::fs::write(cluster.data.join("jobs"), "not a folder").expect("block jobs/");
    let status = cluster
        .jobs()
        .await
        .submit_job(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: vec!["input/pg-grimm.txt".into()],
            n_reduce: 1,
            split_bytes: 0,
            max_skipped_records: 0,
        })
        .await
        .expect_err("cannot create the job folder");
    assert!(status.message().contains("jobs/"), "{}", status.message());
}

/// Unmounts a test's tmpfs when dropped, whatever happened.
struct Mount(std::path::PathBuf);

impl Mount {
    /// A tmpfs of `size` at `dir`, or `None` (with a message) where mounting is not allowed.
    fn tmpfs(dir: &std::path::Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(Mount(dir.to_path_buf())),
            other => {
                eprintln!("skipped: cannot mount a tmpfs here ({other:?}); needs root");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `path` until a write fails with ENOSPC.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// The journal on a full disk: submissions fail while it is full and nothing torn stays
/// behind, so the jobs acknowledged before and after survive a SIGKILL and a restart (the
/// adversarial run lost 5 SUCCEEDED jobs this way).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_never_loses_an_acknowledged_job() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        ..Default::default()
    })
    .await;
    let port = cluster.port();
    cluster.kill_coordinator();
    let state = cluster.data.join(".mr");
    let _ = std::fs::remove_dir_all(&state);
    let Some(_mount) = Mount::tmpfs(&state, "4m") else {
        return;
    };
    cluster.start_coordinator(port).await;
    let input = vec!["input/pg-being_ernest.txt".to_string()];
    let before = cluster.submit("wc", &input, 2).await;
    wait_for(&cluster, &before, "the first job", |j| {
        j.state() == pb::JobState::Succeeded
    })
    .await;

    fill(&state.join("filler"));
    // The journal's last page may still take a few records; then every append fails.
    let mut refused = 0;
    for _ in 0..60 {
        if refused == 3 {
            break;
        }
        let result = try_submit_wc(&cluster, &input).await;
        // Accepted: then it is in the journal and must survive too.
        if let Err(status) = result {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "a full disk refuses submissions");
    std::fs::remove_file(state.join("filler")).expect("free the space");
    let after = cluster.submit("wc", &input, 2).await;
    let done = wait_for(&cluster, &after, "the job after", |j| {
        j.state() == pb::JobState::Succeeded
    })
    .await;
    let listed = list(&cluster).await;

    cluster.kill_coordinator();
    cluster.start_coordinator(port).await;
    for job_id in [&before, &after] {
        let job = get(&cluster, job_id).await.expect("known after restart");
        assert_eq!(job.state(), pb::JobState::Succeeded, "{job_id}");
    }
    assert_eq!(
        list(&cluster).await,
        listed,
        "the same jobs in the same states"
    );
    assert_same_lines(
        &cluster.output_lines(&done),
        &cluster.reference("wc", &input),
        "wc after a full disk",
    );
}

/// Submits wc over `inputs` (n_reduce 2); the coordinator's answer, whatever it is.
async fn try_submit_wc(
    cluster: &Cluster,
    inputs: &[String],
) -> Result<tonic::Response<pb::SubmitJobResponse>, tonic::Status> {
    cluster
        .jobs()
        .await
        .submit_job(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: inputs.to_vec(),
            n_reduce: 2,
            ..Default::default()
        })
        .await
}

/// Every job's id and state, as ListJobs gives them.
async fn list(cluster: &Cluster) -> Vec<(String, i32)> {
    let channel = cluster.channel().await.expect("connect");
    mr_proto_client(channel)
        .list_jobs(pb::ListJobsRequest {})
        .await
        .expect("list")
        .into_inner()
        .jobs
        .into_iter()
        .map(|j| (j.job_id, j.state))
        .collect()
}

/// The coordinator SIGKILLs itself after each step of a journal compaction in turn (the
/// compaction a submission sets off): each time the restarted coordinator knows the job
/// exactly once, and the job then runs to the exact output.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_any_step_of_a_compaction_loses_nothing() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 0,
        // Every change compacts the journal.
        coordinator_args: vec!["--compact-after-bytes".into(), "1".into()],
        ..Default::default()
    })
    .await;
    let port = cluster.port();
    let input = vec!["input/pg-being_ernest.txt".to_string()];
    let mut known = Vec::new();
    for step in 1..=4 {
        cluster.kill_coordinator();
        cluster.options.env = vec![("MR_FAULT_COMPACTION_STEP".into(), step.to_string())];
        cluster.start_coordinator(port).await;
        // Submissions are journaled; once the tail outgrows the last snapshot, the
        // compaction a submission sets off kills the coordinator before its reply: that
        // client hears nothing, but the job was written down.
        let mut acked = Vec::new();
        loop {
            let reply = try_submit_wc(&cluster, &input).await;
            match reply {
                Ok(r) => acked.push(r.into_inner().job_id),
                Err(_) => break,
            }
            assert!(
                acked.len() < 50,
                "no compaction killed the coordinator at step {step}"
            );
        }
        cluster.kill_coordinator();
        cluster.options.env.clear();
        cluster.start_coordinator(port).await;
        let jobs = list(&cluster).await;
        // Every acknowledged job, plus the one whose reply the kill cut off.
        let expected = known.len() + acked.len() + 1;
        assert_eq!(jobs.len(), expected, "after step {step}: {jobs:?}");
        let mut ids: Vec<String> = jobs.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), expected, "each job once");
        assert!(acked.iter().chain(&known).all(|id| ids.contains(id)));
        known = ids;
    }
    cluster.spawn_worker();
    cluster.spawn_worker();
    let reference = cluster.reference("wc", &input);
    for job_id in &known {
        let job = wait_for(&cluster, job_id, "each job", |j| {
            mr_e2e::is_terminal(j.state())
        })
        .await;
        assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
        assert_same_lines(
            &cluster.output_lines(&job),
            &reference,
            "wc after the kills",
        );
    }
}

/// Runs wc over `files` one-line files with one reduce on `workers` workers, each allowed
/// `open_files` open files at most; checks the job succeeded at the first reduce attempt
/// with exactly the sequential output.
async fn one_reduce_over_many_files(
    storage: TestStorage,
    files: usize,
    workers: usize,
    open_files: Option<u64>,
    timeout: Duration,
) {
    let cluster = Cluster::start(ClusterOptions {
        workers,
        worker_open_files_limit: open_files,
        storage,
        ..Default::default()
    })
    .await;
    let inputs = write_one_line_inputs(&cluster.data, files);
    let job_id = cluster.submit("wc", &["input/many/*.txt".into()], 1).await;
    let job = cluster.wait(&job_id, timeout).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(
        job.map.unwrap_or_default().total as usize,
        files,
        "a map per file"
    );
    let reduce = job
        .tasks
        .iter()
        .find(|t| t.kind() == pb::TaskKind::Reduce)
        .expect("the reduce task");
    assert_eq!(reduce.attempts, 1, "{:?}", reduce.history);
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &inputs),
        "wc over one-line files",
    );
    mr_e2e::assert_no_temp_files(&cluster.data);
}

/// A reduce with more inputs than its worker may open files (RLIMIT_NOFILE 128, hard, so
/// the worker cannot raise it) merges them in passes and succeeds: too many open files is
/// never taken for lost intermediates, and the job does not loop.
async fn a_reduce_with_more_inputs_than_the_open_file_limit_succeeds(storage: TestStorage) {
    one_reduce_over_many_files(storage, 300, 1, Some(128), Duration::from_secs(60)).await;
}

/// 20,000 inputs (a map each) into one reduce: thousands of intermediates, merged in passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_of_20000_one_line_files_succeeds() {
    one_reduce_over_many_files(
        TestStorage::Folder,
        20_000,
        2,
        None,
        Duration::from_secs(180),
    )
    .await;
}

on_both_storages!(
    output_is_exact_through_a_coordinator_restart_and_constant_worker_kills,
    a_stalled_task_gets_a_backup_copy_and_the_late_report_is_ignored,
    a_corrupt_intermediate_makes_its_map_task_run_again,
    a_reduce_with_more_inputs_than_the_open_file_limit_succeeds,
);
