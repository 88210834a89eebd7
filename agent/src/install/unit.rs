//! The hardened systemd unit, one template for both layouts
//! (`installer/linux/transmissor-agent.service.in`): only `ExecStart`'s
//! binary differs between `install` and the `.deb`.

use super::layout;

/// The template; `@USER@`, `@BINARY@`, `@CONFIG@` and `@STATE_DIR@` are
/// filled in by [`render`].
pub const TEMPLATE: &str = include_str!("../../../installer/linux/transmissor-agent.service.in");

/// The oldest systemd that knows every directive of the unit (ProtectProc=
/// came in 247; the others are older, see the template's header). An older
/// one ignores what it does not know, with a warning, and runs the agent
/// less confined; the doctor compares the running systemd with this.
pub use crate::doctor::service::MIN_SYSTEMD;

/// The unit for a service running `binary` as `user`.
pub fn render(binary: &str, user: &str) -> String {
    TEMPLATE
        .replace("@USER@", user)
        .replace("@BINARY@", binary)
        .replace("@CONFIG@", layout::CONFIG)
        .replace("@STATE_DIR@", layout::STATE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_in_and_consistent() {
        let u = render(layout::BINARY, "transmissor");
        assert!(
            u.contains("ExecStart=/usr/local/bin/transmissor-agent run --config /etc/transmissor/agent.toml\n"),
            "{u}"
        );
        assert!(u.contains("User=transmissor\nGroup=transmissor\n"));
        // No placeholder left (systemd's own @groups have lowercase names).
        let at: Vec<usize> = u.match_indices('@').map(|(i, _)| i).collect();
        assert!(
            !at.windows(2).any(|w| {
                let name = &u[w[0] + 1..w[1]];
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            }),
            "{u}"
        );
        // StateDirectory= is relative to /var/lib.
        let state = u
            .lines()
            .find_map(|l| l.strip_prefix("StateDirectory="))
            .unwrap();
        assert_eq!(format!("/var/lib/{state}"), layout::STATE_DIR);
        assert!(u.contains(&format!("Needs systemd {MIN_SYSTEMD} or later")));
        for d in [
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
            "UMask=0077",
            "CapabilityBoundingSet=\n",
            "Restart=on-failure",
        ] {
            assert!(u.contains(d), "{d} missing");
        }
        let packaged = render(layout::PACKAGED_BINARY, "transmissor");
        let differing: Vec<_> = u
            .lines()
            .zip(packaged.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(differing.len(), 1, "{differing:?}");
        assert!(differing[0].0.starts_with("ExecStart="));
    }
}
