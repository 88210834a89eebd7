//! Operators' "run now" requests (retries), received in heartbeat answers.
//!
//! The collector sends each pending request in every answer until the agent
//! reports it taken; the agent reports the ids of the latest answer in its
//! next heartbeat. An id seen before (an answer whose report was lost) is
//! not queued again, so a running agent runs each request once (after a
//! restart between receiving and reporting it, the request may run again;
//! loading is exactly-once, so that costs a transmission, not data). The
//! daemon takes queued requests with [`RunRequests::next`] and decides
//! which jobs they mean. Only an agent whose daemon accepts requests
//! ([`RunRequests::accept`]) takes them: one started for a single run
//! (`run --now`, cron) leaves them for the collector to hand out again.
//! A request for a job that started less than `[schedule]
//! run_now_min_interval` ago is dropped ([`RunRequests::may_run_now`]):
//! requests (from an operator, or a compromised collector) cannot make the
//! agent load the municipality's database with run after run.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use transmissor_proto::pb;

/// Ids remembered to recognise a request sent again.
const REMEMBERED: usize = 1024;

/// One request to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub id: u64,
    /// One job; `None`: every job of the plan.
    pub job: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// The daemon runs and takes requests.
    accepting: bool,
    /// Ids already queued, newest last.
    seen: VecDeque<u64>,
    /// The ids of the latest answer, reported taken in the next heartbeat.
    to_report: Vec<u64>,
    /// New ids arrived: the heartbeat reports them at once.
    report_due: bool,
    queue: Vec<Requested>,
    /// When each job last started (any run of the daemon).
    started: HashMap<String, Instant>,
}

/// Requests between the heartbeat that receives them and the daemon.
#[derive(Default)]
pub struct RunRequests {
    inner: Mutex<Inner>,
    queued: Notify,
}

impl RunRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The daemon takes requests from now on.
    pub fn accept(&self) {
        self.lock().accepting = true;
    }

    /// What one heartbeat answer carried: new ids are queued; every id of
    /// the answer is reported taken in the next heartbeat. Ignored while no
    /// daemon accepts requests.
    pub fn receive(&self, requests: &[pb::RunRequest]) {
        let mut inner = self.lock();
        if !inner.accepting {
            return;
        }
        inner.to_report = requests.iter().map(|r| r.id).collect();
        let mut added = false;
        for r in requests {
            if inner.seen.contains(&r.id) {
                continue;
            }
            if inner.seen.len() == REMEMBERED {
                inner.seen.pop_front();
            }
            inner.seen.push_back(r.id);
            let job = Some(r.job.clone()).filter(|j| !j.is_empty());
            tracing::info!(
                request = r.id,
                job = job.as_deref().unwrap_or("*"),
                "run requested by an operator"
            );
            inner.queue.push(Requested { id: r.id, job });
            added = true;
        }
        inner.report_due |= added;
        drop(inner);
        if added {
            self.queued.notify_one();
        }
    }

    /// The ids the next heartbeat reports taken.
    pub fn to_report(&self) -> Vec<u64> {
        self.lock().to_report.clone()
    }

    /// Whether new requests arrived since the last call: the heartbeat then
    /// beats again at once, so they are reported taken within a round trip
    /// (the window in which a restart could run one twice).
    pub fn take_report_due(&self) -> bool {
        std::mem::take(&mut self.lock().report_due)
    }

    /// The daemon starts `jobs` now (scheduled or requested).
    pub fn started<'a>(&self, jobs: impl IntoIterator<Item = &'a String>) {
        self.started_at(jobs, Instant::now());
    }

    fn started_at<'a>(&self, jobs: impl IntoIterator<Item = &'a String>, at: Instant) {
        let mut inner = self.lock();
        for job in jobs {
            inner.started.insert(job.clone(), at);
        }
    }

    /// Whether a run-now of `job` may run: its last run started at least
    /// `min_interval` ago (or never). Refused requests are logged; the
    /// request was reported taken, so the collector does not send it again.
    pub fn may_run_now(&self, request: u64, job: &str, min_interval: Duration) -> bool {
        self.may_run_now_at(request, job, min_interval, Instant::now())
    }

    fn may_run_now_at(&self, request: u64, job: &str, min: Duration, now: Instant) -> bool {
        let last = self.lock().started.get(job).copied();
        match last {
            Some(at) if now.saturating_duration_since(at) < min => {
                tracing::warn!(
                    request,
                    %job,
                    ran_secs_ago = now.saturating_duration_since(at).as_secs(),
                    min_interval_secs = min.as_secs(),
                    "run request refused: the job ran too recently"
                );
                false
            }
            _ => true,
        }
    }

    /// Waits for queued requests and takes them all. Cancel-safe: requests
    /// are taken only in the poll that returns them.
    pub async fn next(&self) -> Vec<Requested> {
        loop {
            let taken = std::mem::take(&mut self.lock().queue);
            if !taken.is_empty() {
                return taken;
            }
            self.queued.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u64, job: &str) -> pb::RunRequest {
        pb::RunRequest {
            id,
            job: job.into(),
        }
    }

    #[test]
    fn without_a_daemon_nothing_is_taken() {
        let r = RunRequests::default();
        r.receive(&[req(1, "")]);
        assert!(r.to_report().is_empty());
        assert!(r.lock().queue.is_empty());
    }

    #[tokio::test]
    async fn a_request_sent_again_runs_once_and_is_reported_until_dropped() {
        let r = RunRequests::default();
        r.accept();
        r.receive(&[req(1, ""), req(2, "cad")]);
        assert_eq!(r.to_report(), vec![1, 2]);
        assert!(r.take_report_due() && !r.take_report_due());
        // The report was lost: the collector sends both again.
        r.receive(&[req(1, ""), req(2, "cad")]);
        assert_eq!(
            r.next().await,
            vec![
                Requested { id: 1, job: None },
                Requested {
                    id: 2,
                    job: Some("cad".into())
                }
            ]
        );
        // The collector stored them taken and sends no more.
        r.receive(&[]);
        assert!(r.to_report().is_empty());
        r.receive(&[req(3, "atend")]);
        assert_eq!(
            r.next().await,
            vec![Requested {
                id: 3,
                job: Some("atend".into())
            }]
        );
    }

    #[test]
    fn a_job_that_ran_recently_is_not_run_again_on_request() {
        let r = RunRequests::default();
        let (t0, min) = (Instant::now(), Duration::from_secs(600));
        assert!(r.may_run_now_at(1, "cad", min, t0), "never ran");
        r.started_at([&"cad".to_string()], t0);
        let soon = t0 + Duration::from_secs(60);
        assert!(!r.may_run_now_at(2, "cad", min, soon));
        assert!(r.may_run_now_at(3, "atend", min, soon));
        assert!(r.may_run_now_at(4, "cad", min, t0 + min));
        assert!(r.may_run_now_at(5, "cad", Duration::ZERO, soon));
    }

    #[test]
    fn remembers_a_bounded_number_of_ids() {
        let r = RunRequests::default();
        r.accept();
        for id in 0..(REMEMBERED as u64 + 10) {
            r.receive(&[req(id, "")]);
        }
        assert_eq!(r.lock().seen.len(), REMEMBERED);
        assert_eq!(r.lock().queue.len(), REMEMBERED + 10);
    }
}
