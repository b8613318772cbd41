//! Authentication and TLS, with real processes: a token guards the job and worker APIs (not
//! health or reflection), a TLS coordinator serves TLS only and its workers and healthcheck
//! reach it with the CA, and unusable certificate, key or CA files are named in the errors.

use mr_e2e::v1 as pb;
use mr_e2e::v1::coordinator_client::CoordinatorClient;
use mr_e2e::v1::job_service_client::JobServiceClient;
use mr_e2e::{Bearer, Cluster, ClusterOptions, TlsFiles, assert_same_lines, bin};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use tonic::Code;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const TOKEN: &str = "e2e-Secret-token_0123456789";

fn metamorphosis() -> Vec<String> {
    vec!["input/pg-metamorphosis.txt".to_string()]
}

/// Runs wc over Metamorphosis on the cluster and checks it against the reference.
async fn wc_matches_reference(cluster: &Cluster) -> String {
    let job_id = cluster.submit("wc", &metamorphosis(), 3).await;
    let job = cluster.wait(&job_id, JOB_TIMEOUT).await;
    assert_eq!(
        job.state(),
        pb::JobState::Succeeded,
        "job failed: {}\ncoordinator log:\n{}",
        job.error,
        mr_e2e::tail(&cluster.coordinator_log(), 40)
    );
    assert_same_lines(
        &cluster.output_lines(&job),
        &cluster.reference("wc", &metamorphosis()),
        "wc with security on",
    );
    job_id
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (make setup installs it)")
}

fn health(args: &[&str]) -> Output {
    run(Command::new(bin("mr-coordinator")).arg("health").args(args))
}

#[tokio::test(flavor = "multi_thread")]
async fn token_guards_the_job_and_worker_apis_but_not_health_or_reflection() {
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        auth_token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await;
    // The workers (token from MR_AUTH_TOKEN) and the harness (the header) get through.
    let job_id = wc_matches_reference(&cluster).await;

    let channel = cluster.channel().await.expect("connect");
    let status = JobServiceClient::new(channel.clone())
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("missing bearer token"),
        "{status:?}"
    );
    let status = JobServiceClient::with_interceptor(channel.clone(), Bearer::new(Some("wrong")))
        .list_jobs(pb::ListJobsRequest {})
        .await
        .expect_err("wrong token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid bearer token");
    // A prefix of the right token is wrong too.
    let status =
        JobServiceClient::with_interceptor(channel.clone(), Bearer::new(Some(&TOKEN[..10])))
            .list_jobs(pb::ListJobsRequest {})
            .await
            .expect_err("a prefix of the token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = JobServiceClient::new(channel.clone())
        .submit_job(pb::SubmitJobRequest {
            app: "wc".into(),
            inputs: metamorphosis(),
            n_reduce: 1,
            split_bytes: 0,
            max_skipped_records: 0,
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The worker API: an intruder can neither take tasks nor fetch apps.
    let mut intruder = CoordinatorClient::new(channel.clone());
    let status = intruder
        .request_task(pb::RequestTaskRequest {
            worker: "intruder".into(),
            wait_ms: 0,
            max_tasks: 1,
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = intruder
        .get_app(pb::GetAppRequest {
            sha256: "00".repeat(32),
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // With the right token the same channel works.
    let jobs = JobServiceClient::with_interceptor(channel, Bearer::new(Some(TOKEN)))
        .list_jobs(pb::ListJobsRequest {})
        .await
        .expect("right token")
        .into_inner()
        .jobs;
    assert!(jobs.iter().any(|j| j.job_id == job_id));

    // Health and reflection stay open.
    let out = health(&["--addr", &cluster.addr]);
    assert!(out.status.success(), "health: {}", stderr(&out));
    let target = cluster.addr.trim_start_matches("http://");
    let out = grpcurl(&["-plaintext", target, "list"]);
    assert!(out.status.success(), "grpcurl list: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mapreduce.v1.JobService"));
    let out = grpcurl(&["-plaintext", target, "grpc.health.v1.Health/Check"]);
    assert!(out.status.success(), "grpcurl health: {}", stderr(&out));
    // grpcurl as the docs show it: refused without the header, served with it.
    let out = grpcurl(&["-plaintext", target, "mapreduce.v1.JobService/ListJobs"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Unauthenticated"), "{}", stderr(&out));
    let header = format!("authorization: Bearer {TOKEN}");
    let out = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        target,
        "mapreduce.v1.JobService/ListJobs",
    ]);
    assert!(out.status.success(), "grpcurl with token: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&job_id));

    // A worker with the wrong token says so in its log.
    let log = cluster.dir.path().join("wrong-token-worker.log");
    let mut worker = Command::new(bin("mr-worker"))
        .args(["--coordinator", &cluster.addr, "--worker-id", "wrong-token"])
        .arg("--data-dir")
        .arg(&cluster.data)
        .env("MR_AUTH_TOKEN", "not-the-token")
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log"))
        .spawn()
        .expect("spawn worker");
    let mut refused = false;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("refused this worker's auth token")
            && text.contains("invalid bearer token")
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        refused,
        "worker log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in `dir`.
fn make_tls_files(dir: &Path, name: &str) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("mr e2e {name} CA"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "mr coordinator");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server certificate");

    let files = TlsFiles {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&files.ca, ca_cert.pem()).expect("write CA");
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cluster_runs_jobs_and_refuses_plaintext() {
    let certs = tempfile::tempdir().expect("tempdir");
    let tls = make_tls_files(certs.path(), "server");
    let other = make_tls_files(certs.path(), "other");
    // TLS with a token, as a deployment outside a trusted network would run.
    let cluster = Cluster::start(ClusterOptions {
        workers: 2,
        auth_token: Some(TOKEN.into()),
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .await;
    assert!(cluster.addr.starts_with("https://localhost:"));
    // Workers reach it with the https URL and --tls-ca.
    wc_matches_reference(&cluster).await;

    // A plaintext client gets nowhere.
    let port = cluster.port();
    let plain = format!("http://127.0.0.1:{port}");
    if let Ok(channel) = mr_e2e::connect(&plain, None).await {
        let reply = JobServiceClient::with_interceptor(channel, Bearer::new(Some(TOKEN)))
            .list_jobs(pb::ListJobsRequest {})
            .await;
        assert!(reply.is_err(), "a plaintext call was served: {reply:?}");
    }
    let out = health(&["--addr", &plain]);
    assert!(!out.status.success(), "plaintext health check passed");
    // Neither does a client that trusts another CA.
    let status = match mr_e2e::connect(&cluster.addr, Some(&other.ca)).await {
        Err(_) => None,
        Ok(channel) => Some(
            JobServiceClient::with_interceptor(channel, Bearer::new(Some(TOKEN)))
                .list_jobs(pb::ListJobsRequest {})
                .await
                .expect_err("served to a client that trusts another CA"),
        ),
    };
    if let Some(status) = status {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    // The healthcheck with the CA; a name override works; a wrong CA or none fails clearly.
    let addr = format!("https://localhost:{port}");
    let ca = tls.ca.to_str().expect("utf-8 path");
    let out = health(&["--addr", &addr, "--tls-ca", ca]);
    assert!(out.status.success(), "TLS health: {}", stderr(&out));
    let by_ip = format!("https://127.0.0.1:{port}");
    let out = health(&[
        "--addr",
        &by_ip,
        "--tls-ca",
        ca,
        "--tls-domain",
        "localhost",
    ]);
    assert!(out.status.success(), "TLS health by IP: {}", stderr(&out));
    let out = run(Command::new(bin("mr-coordinator"))
        .args(["health", "--addr", &addr])
        .env("MR_TLS_CA", &tls.ca));
    assert!(
        out.status.success(),
        "TLS health, CA from env: {}",
        stderr(&out)
    );
    let out = health(&["--addr", &addr, "--tls-ca", other.ca.to_str().unwrap()]);
    assert!(!out.status.success(), "health trusted another CA");
    let out = health(&["--addr", &addr]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-ca"), "{}", stderr(&out));

    // grpcurl as the docs show it.
    let target = format!("localhost:{port}");
    let out = grpcurl(&["-cacert", ca, &target, "list"]);
    assert!(
        out.status.success(),
        "grpcurl -cacert list: {}",
        stderr(&out)
    );
    let header = format!("authorization: Bearer {TOKEN}");
    let out = grpcurl(&[
        "-cacert",
        ca,
        "-H",
        &header,
        &target,
        "mapreduce.v1.JobService/ListJobs",
    ]);
    assert!(out.status.success(), "grpcurl -cacert -H: {}", stderr(&out));
    let out = grpcurl(&["-plaintext", &target, "list"]);
    assert!(
        !out.status.success(),
        "grpcurl -plaintext reached a TLS server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_tls_files_are_named_in_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = make_tls_files(dir.path(), "server");
    let data = dir.path().join("data");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");

    let coordinator = |cert: &Path, key: &Path| {
        let out = run(Command::new(bin("mr-coordinator"))
            .args(["--listen", "127.0.0.1:0", "--apps-dir"])
            .arg(mr_e2e::apps_dir())
            .arg("--data-dir")
            .arg(&data)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key));
        assert!(
            !out.status.success(),
            "coordinator started with {cert:?} {key:?}"
        );
        stderr(&out)
    };
    let error = coordinator(&missing, &tls.key);
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("TLS certificate"),
        "{error}"
    );
    let error = coordinator(&garbage, &tls.key);
    assert!(
        error.contains(&garbage.display().to_string()) && error.contains("no PEM certificate"),
        "{error}"
    );
    let error = coordinator(&tls.cert, &missing);
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("TLS private key"),
        "{error}"
    );
    let error = coordinator(&tls.cert, &garbage);
    assert!(
        error.contains(&garbage.display().to_string()) && error.contains("private key"),
        "{error}"
    );
    // A key that is not the certificate's.
    let other = make_tls_files(dir.path(), "other");
    let error = coordinator(&tls.cert, &other.key);
    assert!(error.contains(&tls.cert.display().to_string()), "{error}");

    let worker = |ca: &Path| {
        let out = run(Command::new(bin("mr-worker"))
            .args(["--coordinator", "https://localhost:1", "--tls-ca"])
            .arg(ca)
            .arg("--data-dir")
            .arg(&data));
        assert!(!out.status.success(), "worker started with {ca:?}");
        stderr(&out)
    };
    let error = worker(&missing);
    assert!(
        error.contains(&missing.display().to_string()) && error.contains("TLS CA"),
        "{error}"
    );
    let error = worker(&garbage);
    assert!(
        error.contains(&garbage.display().to_string()) && error.contains("no PEM certificate"),
        "{error}"
    );
    // A CA with a plaintext URL, and https without a CA, are mistakes too.
    let out = run(Command::new(bin("mr-worker"))
        .args(["--coordinator", "http://127.0.0.1:1", "--tls-ca"])
        .arg(&tls.ca)
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    let out = run(Command::new(bin("mr-worker"))
        .args(["--coordinator", "https://127.0.0.1:1"])
        .arg("--data-dir")
        .arg(&data));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-ca"), "{}", stderr(&out));
    let out = health(&[
        "--addr",
        "https://localhost:1",
        "--tls-ca",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        stderr(&out)
    );
}
