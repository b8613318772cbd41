//! `mr watch`: follows a job's WatchJob stream to its end. On a terminal, one progress bar
//! per phase (tasks done of all, the map phase's input MiB/s, ETA); otherwise one plain line
//! per change (`map 3/8 reduce 0/10 RUNNING`), or with `--json` one JSON object per update.
//! Then the final state, and the exit code that tells it (see [`exit_code`]).

use crate::client::{self, Client};
use crate::error::{CliError, watch_failed};
use crate::output::{self, job_state};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mr_proto::v1 as pb;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The exit code for a job's final state: 0 SUCCEEDED, 1 FAILED, 2 CANCELLED.
pub(crate) fn exit_code(state: pb::JobState) -> u8 {
    match state {
        pb::JobState::Succeeded => 0,
        pb::JobState::Cancelled => 2,
        _ => 1,
    }
}

fn is_terminal(state: pb::JobState) -> bool {
    matches!(
        state,
        pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

/// Follows `job_id` until it ends and returns it as it ended.
pub(crate) async fn watch(
    client: &mut Client,
    job_id: &str,
    json: bool,
) -> Result<pb::Job, CliError> {
    let mut display = if json {
        Display::Json
    } else if std::io::stdout().is_terminal() {
        // Only for the MiB/s: the job's map splits, from its task records.
        let bytes = client::job(client, job_id, true)
            .await
            .ok()
            .and_then(|job| map_input_bytes(&job));
        Display::Bars(Bars::new(job_id, bytes))
    } else {
        Display::Lines {
            last: String::new(),
            warning: String::new(),
        }
    };
    let mut stream = client
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.to_string(),
            detailed: false,
            ..Default::default()
        })
        .await
        .map_err(|status| watch_failed(job_id, status))?
        .into_inner();
    let mut last = None;
    loop {
        let update = match stream.message().await {
            Ok(Some(update)) => update,
            Ok(None) => break,
            Err(status) => {
                display.abandon();
                return Err(watch_failed(job_id, status));
            }
        };
        display.update(&update)?;
        last = Some(update);
    }
    let job = match last {
        Some(job) if is_terminal(job.state()) => job,
        // The stream ended early (the coordinator stopping): how the job stands now.
        _ => client::job(client, job_id, false).await?,
    };
    if !is_terminal(job.state()) {
        display.abandon();
        return Err(CliError::WatchLost {
            job_id: job_id.to_string(),
            message: format!("it ended while the job is {}", job_state(job.state())),
        });
    }
    display.finish(&job)?;
    Ok(job)
}

/// The bytes of input the map tasks read, from their splits (`path[start..end]`).
fn map_input_bytes(job: &pb::Job) -> Option<u64> {
    let bytes: u64 = job
        .tasks
        .iter()
        .filter(|t| t.kind() == pb::TaskKind::Map)
        .filter_map(|t| split_len(&t.input))
        .sum();
    (bytes > 0).then_some(bytes)
}

/// The length of a split `path[start..end]`.
fn split_len(input: &str) -> Option<u64> {
    let range = input.rsplit_once('[')?.1.strip_suffix(']')?;
    let (start, end) = range.split_once("..")?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    end.checked_sub(start)
}

/// The line that ends a watch: `job ID ended after 4.1s: SUCCEEDED` (with the error).
fn final_line(job: &pb::Job) -> String {
    let mut line = format!(
        "job {} ended after {}",
        job.job_id,
        output::job_duration(job)
    );
    if job.skipped_records > 0 {
        line.push_str(&format!(", {} records skipped", job.skipped_records));
    }
    line.push_str(": ");
    line.push_str(job_state(job.state()));
    if !job.error.is_empty() {
        line.push_str(": ");
        line.push_str(&crate::error::one_line(&job.error));
    }
    line
}

/// `map 3/8 reduce 0/10 RUNNING`.
fn plain_line(job: &pb::Job) -> String {
    format!(
        "map {} reduce {} {}",
        output::progress(job.map.as_ref()),
        output::progress(job.reduce.as_ref()),
        job_state(job.state())
    )
}

enum Display {
    Json,
    Lines { last: String, warning: String },
    Bars(Bars),
}

impl Display {
    fn update(&mut self, job: &pb::Job) -> Result<(), CliError> {
        match self {
            Display::Json => {
                let mut out = std::io::stdout();
                serde_json::to_writer(&mut out, &output::job_json(job))
                    .map_err(std::io::Error::from)?;
                writeln!(out)?;
                out.flush()?;
            }
            Display::Lines { last, warning } => {
                let mut out = std::io::stdout();
                if job.warning != *warning {
                    if !job.warning.is_empty() {
                        writeln!(out, "warning: {}", crate::error::one_line(&job.warning))?;
                    }
                    warning.clone_from(&job.warning);
                }
                let line = plain_line(job);
                if line != *last {
                    writeln!(out, "{line}")?;
                    *last = line;
                }
                out.flush()?;
            }
            Display::Bars(bars) => bars.update(job),
        }
        Ok(())
    }

    fn finish(&mut self, job: &pb::Job) -> Result<(), CliError> {
        if let Display::Bars(bars) = self {
            bars.finish();
        }
        if !matches!(self, Display::Json) {
            let mut out = std::io::stdout();
            writeln!(out, "{}", final_line(job))?;
            out.flush()?;
        }
        Ok(())
    }

    /// Leaves the bars as they are, so that an error is printed below them.
    fn abandon(&mut self) {
        if let Display::Bars(bars) = self {
            bars.abandon();
        }
    }
}

/// Progress bars on the terminal: one per phase, and a line with the state.
struct Bars {
    job_id: String,
    _multi: MultiProgress,
    status: ProgressBar,
    map: ProgressBar,
    reduce: ProgressBar,
    map_rate: Rate,
    reduce_rate: Rate,
    /// Input bytes per map task, on average: what turns tasks/s into MiB/s.
    bytes_per_map: Option<u64>,
    input_bytes: Option<u64>,
}

impl Bars {
    fn new(job_id: &str, input_bytes: Option<u64>) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        status.enable_steady_tick(Duration::from_millis(120));
        let style = ProgressStyle::with_template(
            "{prefix:<6} [{bar:32.cyan/blue}] {pos:>5}/{len:<5} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = |name: &str| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(name.to_string());
            bar
        };
        let map = bar("map");
        let reduce = bar("reduce");
        Bars {
            job_id: job_id.to_string(),
            _multi: multi,
            status,
            map,
            reduce,
            map_rate: Rate::default(),
            reduce_rate: Rate::default(),
            bytes_per_map: None,
            input_bytes,
        }
    }

    fn update(&mut self, job: &pb::Job) {
        let map = job.map.unwrap_or_default();
        let reduce = job.reduce.unwrap_or_default();
        if self.bytes_per_map.is_none() && map.total > 0 {
            self.bytes_per_map = self.input_bytes.map(|b| b / u64::from(map.total));
        }
        let mut status = format!(
            "job {} {} ({})",
            self.job_id,
            job_state(job.state()),
            output::job_duration(job)
        );
        if !job.warning.is_empty() {
            status.push_str(" - ");
            status.push_str(&crate::error::one_line(&job.warning));
        }
        self.status.set_message(status);

        let now = Instant::now();
        self.map_rate.observe(now, map.completed);
        // The reduce phase starts when the last map is done: measure it from then on.
        if map.completed < map.total {
            self.reduce_rate = Rate::default();
        }
        self.reduce_rate.observe(now, reduce.completed);

        let mut map_msg = Vec::new();
        if let (Some(tasks_per_sec), Some(bytes)) = (self.map_rate.per_sec(now), self.bytes_per_map)
        {
            map_msg.push(format!(
                "{:.1} MiB/s",
                tasks_per_sec * bytes as f64 / (1 << 20) as f64
            ));
        }
        map_msg.extend(self.map_rate.eta(now, map.total));
        set(&self.map, &map, map_msg.join("  "));
        let reduce_msg = self.reduce_rate.eta(now, reduce.total).unwrap_or_default();
        set(&self.reduce, &reduce, reduce_msg);
    }

    fn finish(&mut self) {
        self.status.finish_and_clear();
        self.map.finish();
        self.reduce.finish();
    }

    fn abandon(&mut self) {
        self.status.abandon();
        self.map.abandon();
        self.reduce.abandon();
    }
}

fn set(bar: &ProgressBar, phase: &pb::PhaseProgress, message: String) {
    bar.set_length(u64::from(phase.total));
    bar.set_position(u64::from(phase.completed));
    bar.set_message(message);
}

/// A phase's pace since it was first seen: tasks per second and the time left.
#[derive(Default)]
struct Rate {
    /// When the phase was first seen, and how many tasks were done then.
    start: Option<(Instant, u32)>,
    done: u32,
}

impl Rate {
    fn observe(&mut self, now: Instant, done: u32) {
        self.start.get_or_insert((now, done));
        self.done = done;
    }

    fn per_sec(&self, now: Instant) -> Option<f64> {
        let (start, done_then) = self.start?;
        let elapsed = now.duration_since(start).as_secs_f64();
        let done = self.done.checked_sub(done_then).filter(|&d| d > 0)?;
        (elapsed >= 0.2).then(|| f64::from(done) / elapsed)
    }

    /// `ETA 12s` while tasks are left and a pace is known.
    fn eta(&self, now: Instant, total: u32) -> Option<String> {
        let left = total.checked_sub(self.done).filter(|&l| l > 0)?;
        let per_sec = self.per_sec(now)?;
        let secs = f64::from(left) / per_sec;
        secs.is_finite().then(|| {
            format!(
                "ETA {}",
                output::short_duration(Duration::from_secs_f64(secs.min(1e7)))
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_the_final_state() {
        assert_eq!(exit_code(pb::JobState::Succeeded), 0);
        assert_eq!(exit_code(pb::JobState::Failed), 1);
        assert_eq!(exit_code(pb::JobState::Cancelled), 2);
    }

    #[test]
    fn splits_give_their_length() {
        assert_eq!(split_len("input/pg-x.txt[0..16777216]"), Some(16_777_216));
        assert_eq!(split_len("odd[name].txt[10..25]"), Some(15));
        assert_eq!(split_len("no range"), None);
        assert_eq!(split_len("f[9..3]"), None);
    }

    #[test]
    fn lines_say_progress_and_state() {
        let job = pb::Job {
            job_id: "j1".into(),
            state: pb::JobState::Failed as i32,
            map: Some(pb::PhaseProgress {
                total: 8,
                completed: 3,
                ..Default::default()
            }),
            reduce: Some(pb::PhaseProgress {
                total: 10,
                ..Default::default()
            }),
            error: "map-0 failed\n2 times".into(),
            submitted_at_ms: 1_000,
            finished_at_ms: 5_200,
            ..Default::default()
        };
        assert_eq!(plain_line(&job), "map 3/8 reduce 0/10 FAILED");
        assert_eq!(
            final_line(&job),
            "job j1 ended after 4.2s: FAILED: map-0 failed 2 times"
        );
    }

    #[test]
    fn a_pace_needs_progress_and_time() {
        let start = Instant::now();
        let mut rate = Rate::default();
        rate.observe(start, 2);
        assert_eq!(rate.per_sec(start + Duration::from_secs(1)), None);
        rate.observe(start + Duration::from_secs(2), 6);
        let per_sec = rate.per_sec(start + Duration::from_secs(2));
        assert_eq!(per_sec, Some(2.0));
        assert_eq!(
            rate.eta(start + Duration::from_secs(2), 10).as_deref(),
            Some("ETA 2.0s")
        );
        assert_eq!(rate.eta(start + Duration::from_secs(2), 6), None);
    }
}
