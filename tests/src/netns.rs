//! An emulated slow link: a network namespace joined to the host by a veth
//! pair, each end shaped by a `tbf` qdisc (`ip` and `tc` from iproute2;
//! needs root). Whatever runs inside the namespace (a source PostgreSQL, an
//! agent) reaches the host only through the shaped link. Removed on drop.

use std::process::Command;

use anyhow::{Context, Result, bail};

pub struct SlowLink {
    /// The namespace's name (for `ip netns exec`).
    pub netns: String,
    /// The host's end of the link, as seen from the namespace.
    pub host_ip: String,
    /// The namespace's end, as seen from the host.
    pub ns_ip: String,
    /// The shaped rate, in Mbit/s.
    pub rate_mbit: u32,
    net: String,
    host_if: String,
}

fn ip(args: &[&str]) -> Result<()> {
    sh("ip", args)
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (package iproute2)"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl SlowLink {
    /// Makes the namespace and the link, shaped to `rate_mbit` each way.
    /// Fails (with the reason) where namespaces cannot be made: not root, no
    /// iproute2, a container without CAP_NET_ADMIN.
    pub fn create(rate_mbit: u32) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            bail!("network namespaces need root");
        }
        // Unique per process; a /30 out of 10.231.0.0/16 per process.
        let id = std::process::id() % 16_000;
        let (a, b) = (id / 64, (id % 64) * 4);
        let link = Self {
            netns: format!("txm-{id}"),
            host_ip: format!("10.231.{a}.{}", b + 1),
            ns_ip: format!("10.231.{a}.{}", b + 2),
            rate_mbit,
            net: format!("10.231.{a}.{b}/30"),
            host_if: format!("txmh{id}"),
        };
        let ns_if = format!("txmn{id}");
        let _ = ip(&["netns", "del", &link.netns]);
        let _ = ip(&["link", "del", &link.host_if]);
        ip(&["netns", "add", &link.netns])?;
        // From here on, drop cleans up.
        ip(&[
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &link.netns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", link.host_ip),
            "dev",
            &link.host_if,
        ])?;
        ip(&["link", "set", &link.host_if, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &link.netns];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", link.ns_ip),
            "dev",
            &ns_if,
        ])?;
        in_ns(&["ip", "link", "set", &ns_if, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        let rate = format!("{rate_mbit}mbit");
        // Token bucket: the burst holds a few full-size packets; the queue
        // holds ~100 ms at the rate (deeper queues only add latency).
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "32kbit", "latency", "100ms",
        ];
        let mut host_tc = vec!["qdisc", "add", "dev", &link.host_if];
        host_tc.extend_from_slice(&tbf);
        sh("tc", &host_tc)?;
        let mut ns_tc = vec!["tc", "qdisc", "add", "dev", &ns_if];
        ns_tc.extend_from_slice(&tbf);
        in_ns(&ns_tc)?;
        Ok(link)
    }

    /// The `pg_hba.conf` line that lets both ends of the link in.
    pub fn hba_line(&self) -> String {
        format!("host all all {} trust", self.net)
    }

    /// The command line prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.netns.clone(),
        ]
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end and with it the pair.
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
