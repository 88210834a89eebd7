//! Operators' "run now" requests (retries), received in heartbeat answers.
//!
//! The collector sends each pending request in every answer until the agent
//! reports it taken; the agent reports the ids of the latest answer in its
//! next heartbeat. An id seen before (an answer whose report was lost) is
//! not queued again, so each request runs once. The daemon takes queued
//! requests with [`RunRequests::next`]; it decides which jobs they mean.

use std::collections::VecDeque;
use std::sync::Mutex;

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
    /// Ids already queued, newest last.
    seen: VecDeque<u64>,
    /// The ids of the latest answer, reported taken in the next heartbeat.
    to_report: Vec<u64>,
    queue: Vec<Requested>,
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

    /// What one heartbeat answer carried: new ids are queued; every id of
    /// the answer is reported taken in the next heartbeat.
    pub fn receive(&self, requests: &[pb::RunRequest]) {
        let mut inner = self.lock();
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
        drop(inner);
        if added {
            self.queued.notify_one();
        }
    }

    /// The ids the next heartbeat reports taken.
    pub fn to_report(&self) -> Vec<u64> {
        self.lock().to_report.clone()
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

    #[tokio::test]
    async fn a_request_sent_again_runs_once_and_is_reported_until_dropped() {
        let r = RunRequests::default();
        r.receive(&[req(1, ""), req(2, "cad")]);
        assert_eq!(r.to_report(), vec![1, 2]);
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
    fn remembers_a_bounded_number_of_ids() {
        let r = RunRequests::default();
        for id in 0..(REMEMBERED as u64 + 10) {
            r.receive(&[req(id, "")]);
        }
        assert_eq!(r.lock().seen.len(), REMEMBERED);
        assert_eq!(r.lock().queue.len(), REMEMBERED + 10);
    }
}
