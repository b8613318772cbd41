//! Apps that misbehave: each task fails with a message naming the app, the task, the input
//! and the reason; the job fails after the configured number of attempts instead of
//! retrying forever; the same worker process then runs the next job correctly.

use mr_e2e::v1 as pb;
use mr_e2e::{Cluster, ClusterOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_apps_fail_their_job_clearly_and_the_worker_carries_on() {
    let mut cluster = Cluster::start(ClusterOptions {
        workers: 1,
        coordinator_args: [
            "--task-time-limit",
            "1s",
            "--task-memory-mib",
            "64",
            "--max-task-failures",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let input = "input/pg-metamorphosis.txt".to_string();
    let cases = [
        ("loop_forever", "time limit"),
        ("trap", "deliberate failure"),
        ("alloc_forever", "memory limit"),
        ("open_file", "open_file"),
        ("big_output", "big_output"),
    ];
    for (app, reason) in cases {
        let job_id = cluster.submit(app, std::slice::from_ref(&input), 1).await;
        let job = cluster.wait(&job_id, Duration::from_secs(60)).await;
        assert_eq!(job.state(), pb::JobState::Failed, "{app}");
        for needle in [app, "map-0", input.as_str(), "failed 2 times", reason] {
            assert!(
                job.error.contains(needle),
                "{app}: error '{}' lacks '{needle}'",
                job.error
            );
        }
        assert!(
            job.outputs.is_empty(),
            "{app}: a failed job lists no outputs"
        );
        assert_eq!(
            cluster.live_workers(),
            [0],
            "{app}: the worker is still there"
        );
        assert_eq!(
            cluster.wait_worker(0, Duration::ZERO),
            None,
            "{app}: worker exited"
        );
    }
    let job_id = cluster.submit("wc", std::slice::from_ref(&input), 2).await;
    let job = cluster.wait(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job.state(), pb::JobState::Succeeded, "{}", job.error);
    assert_eq!(
        cluster.output_lines(&job),
        cluster.reference("wc", std::slice::from_ref(&input))
    );
}
