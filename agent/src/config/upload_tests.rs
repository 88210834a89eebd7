use super::*;
use chrono::TimeZone;

fn parse(toml_text: &str) -> Result<UploadConfig, String> {
    #[derive(Deserialize)]
    struct Wrap {
        upload: UploadConfig,
    }
    toml::from_str::<Wrap>(toml_text)
        .map(|w| w.upload)
        .map_err(|e| e.to_string())
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[test]
fn rates_and_units() {
    assert_eq!(Rate::parse("2 Mbit/s"), Ok(Rate::BytesPerSec(250_000)));
    assert_eq!(Rate::parse("2Mbit/s"), Ok(Rate::BytesPerSec(250_000)));
    assert_eq!(Rate::parse("1.5 MB/s"), Ok(Rate::BytesPerSec(1_500_000)));
    assert_eq!(Rate::parse("64 kbit/s"), Ok(Rate::BytesPerSec(8_000)));
    assert_eq!(Rate::parse("500 KiB/s"), Ok(Rate::BytesPerSec(512_000)));
    assert_eq!(Rate::parse("unlimited"), Ok(Rate::Unlimited));
    for bad in [
        "2 mbps",
        "2",
        "Mbit/s",
        "fast",
        "10 kbit/s",
        "-3 Mbit/s",
        "200 Gbit/s",
        "1.2.3 MB/s",
    ] {
        assert!(Rate::parse(bad).is_err(), "{bad} accepted");
    }
    assert_eq!(Rate::BytesPerSec(250_000).to_string(), "2.000 Mbit/s");
}

#[test]
fn windows_in_brazil_without_daylight_saving() {
    let cfg = parse(
        r#"[upload]
bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s", days = "weekdays" }]"#,
    )
    .unwrap();
    let sp = chrono_tz::America::Sao_Paulo; // UTC-3 all year since 2019
    // Tuesday 2026-12-01 10:00 UTC = 07:00 local: in the window.
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 1, 10, 0), sp).0,
        Rate::BytesPerSec(250_000)
    );
    // 09:59 UTC = 06:59 local: before it.
    assert_eq!(cfg.limit_at(utc(2026, 12, 1, 9, 59), sp).0, Rate::Unlimited);
    // 21:00 UTC = 18:00 local: the end is exclusive.
    assert_eq!(cfg.limit_at(utc(2026, 12, 1, 21, 0), sp).0, Rate::Unlimited);
    // The same in July (no DST in Brazil any more).
    assert_eq!(
        cfg.limit_at(utc(2026, 7, 7, 10, 0), sp).0,
        Rate::BytesPerSec(250_000)
    );
    // Saturday: weekdays only.
    assert_eq!(cfg.limit_at(utc(2026, 12, 5, 13, 0), sp).0, Rate::Unlimited);
    // Manaus is UTC-4: 10:30 UTC is 06:30 there.
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 1, 10, 30), chrono_tz::America::Manaus)
            .0,
        Rate::Unlimited
    );
}

#[test]
fn windows_follow_daylight_saving_in_a_dst_zone() {
    let cfg = parse(
        r#"[upload]
limit = "50 Mbit/s"
bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s" }]"#,
    )
    .unwrap();
    let ny = chrono_tz::America::New_York;
    // January (EST, UTC-5): 11:30 UTC = 06:30 local, outside; 12:00 = 07:00 in.
    assert_eq!(
        cfg.limit_at(utc(2026, 1, 14, 11, 30), ny).0,
        Rate::BytesPerSec(6_250_000)
    );
    assert_eq!(
        cfg.limit_at(utc(2026, 1, 14, 12, 0), ny).0,
        Rate::BytesPerSec(250_000)
    );
    // July (EDT, UTC-4): 11:30 UTC = 07:30 local, inside.
    assert_eq!(
        cfg.limit_at(utc(2026, 7, 15, 11, 30), ny).0,
        Rate::BytesPerSec(250_000)
    );
    // 2026-03-08 spring forward at 02:00 EST -> 03:00 EDT; 06:59 UTC is
    // 01:59 EST and 07:00 UTC is 03:00 EDT: both outside; 11:00 UTC is 07:00 EDT.
    assert_eq!(
        cfg.limit_at(utc(2026, 3, 8, 10, 59), ny).0,
        Rate::BytesPerSec(6_250_000)
    );
    assert_eq!(
        cfg.limit_at(utc(2026, 3, 8, 11, 0), ny).0,
        Rate::BytesPerSec(250_000)
    );
}

#[test]
fn windows_crossing_midnight_end_the_next_day() {
    let cfg = parse(
        r#"[upload]
bandwidth = [
  { from = "22:00", to = "06:00", limit = "10 Mbit/s", days = ["fri"] },
  { from = "06:00", to = "22:00", limit = "1 Mbit/s", days = ["sun"] },
]"#,
    )
    .unwrap();
    let utc0 = chrono_tz::UTC;
    // Friday 2026-12-04 23:00: in; Saturday 05:59: still in; 06:00 out.
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 4, 23, 0), utc0).0,
        Rate::BytesPerSec(1_250_000)
    );
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 5, 5, 59), utc0).0,
        Rate::BytesPerSec(1_250_000)
    );
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 5, 6, 0), utc0).0,
        Rate::Unlimited
    );
    // Thursday night: not a Friday start.
    assert_eq!(
        cfg.limit_at(utc(2026, 12, 3, 23, 0), utc0).0,
        Rate::Unlimited
    );
    // A Sunday window crossing into Monday wraps around the week.
    let wrap = parse(
        r#"[upload]
bandwidth = [{ from = "23:00", to = "01:00", limit = "1 Mbit/s", days = ["sun"] }]"#,
    )
    .unwrap();
    assert_eq!(
        wrap.limit_at(utc(2026, 12, 7, 0, 30), utc0).0,
        Rate::BytesPerSec(125_000)
    );
    assert_eq!(
        wrap.limit_at(utc(2026, 12, 7, 1, 0), utc0).0,
        Rate::Unlimited
    );
    // 00:00 to 24:00 is the whole day.
    let whole = parse(
        r#"[upload]
bandwidth = [{ from = "00:00", to = "24:00", limit = "1 Mbit/s" }]"#,
    )
    .unwrap();
    assert_eq!(
        whole.limit_at(utc(2026, 12, 7, 23, 59), utc0).0,
        Rate::BytesPerSec(125_000)
    );
}

#[test]
fn invalid_windows_are_refused_with_the_reason() {
    for (text, needle) in [
        (
            r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s" }, { from = "17:00", to = "19:00", limit = "1 Mbit/s" }]"#,
            "overlaps upload.bandwidth[0]",
        ),
        (
            r#"bandwidth = [{ from = "22:00", to = "06:00", limit = "2 Mbit/s", days = ["sun"] }, { from = "05:00", to = "07:00", limit = "1 Mbit/s", days = ["mon"] }]"#,
            "overlaps",
        ),
        (
            r#"bandwidth = [{ from = "7:00", to = "18:00", limit = "2 Mbit/s" }]"#,
            "not a time of day",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "24:30", limit = "2 Mbit/s" }]"#,
            "not a time of day",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "07:00", limit = "2 Mbit/s" }]"#,
            "whole day",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbps" }]"#,
            "unknown unit",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s", days = "workdays" }]"#,
            "weekdays",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s", days = ["mon", "mon"] }]"#,
            "twice",
        ),
        (
            r#"bandwidth = [{ from = "07:00", to = "18:00", limit = "2 Mbit/s", weekdays = true }]"#,
            "unknown field",
        ),
    ] {
        let err = parse(&format!("[upload]\n{text}\n")).unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
    }
    // Adjacent windows and same hours on different days are fine.
    parse(
        r#"[upload]
bandwidth = [
  { from = "07:00", to = "18:00", limit = "2 Mbit/s", days = "weekdays" },
  { from = "18:00", to = "07:00", limit = "8 Mbit/s", days = "weekdays" },
  { from = "07:00", to = "18:00", limit = "4 Mbit/s", days = ["sat"] },
]"#,
    )
    .unwrap();
}
