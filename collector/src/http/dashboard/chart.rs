//! Inline SVG charts, no JavaScript: the overview's sparkline and the
//! municipality page's bars (rows per day) and line (duration per day).
//! Sizes and colours come from the stylesheet (classes only).

use std::fmt::Write;

use maud::{Markup, html};

/// The sparkline's drawing height (the CSS box is about 80x18).
const SPARK_H: i64 = 18;

/// A tiny polyline of `values` (oldest first), scaled to its own maximum.
/// Integer coordinates in a stretched view box keep each row's markup
/// short (the overview has 5,570 of them).
pub fn sparkline(values: &[i64], label: &str) -> Markup {
    let width = values.len().saturating_sub(1).max(1);
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let mut points = String::with_capacity(values.len() * 6);
    for (i, v) in values.iter().enumerate() {
        let y = SPARK_H + 1 - (v.clamp(&0, &max) * SPARK_H + max / 2) / max;
        if i > 0 {
            points.push(' ');
        }
        let _ = write!(points, "{i},{y}");
    }
    html! {
        svg.spark viewBox={ "0 0 " (width) " " (SPARK_H + 2) } preserveAspectRatio="none"
            role="img" aria-label=(label) {
            polyline points=(points) {}
        }
    }
}

/// One value of a chart, with its tooltip.
pub struct Point {
    pub value: f64,
    /// Shown on hover (`<title>`).
    pub title: String,
    /// Drawn in the warning colour (a day with a failure).
    pub flagged: bool,
}

/// The labels around a chart: the top of the scale, the first and last
/// point's names.
pub struct Labels {
    pub top: String,
    pub start: String,
    pub end: String,
}

const W: f64 = 900.0;
const H: f64 = 160.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 896.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 134.0;

fn scale_max(points: &[Point]) -> f64 {
    points
        .iter()
        .map(|p| p.value)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
}

fn frame(label: &str, labels: &Labels, body: Markup) -> Markup {
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
            line.axis x1=(LEFT) y1=(BOTTOM) x2=(RIGHT) y2=(BOTTOM) {}
            line.grid x1=(LEFT) y1=(TOP) x2=(RIGHT) y2=(TOP) {}
            text.tick x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (labels.top) }
            text.tick x=(LEFT - 6.0) y=(BOTTOM) text-anchor="end" { "0" }
            text.tick x=(LEFT) y=(H - 6.0) text-anchor="start" { (labels.start) }
            text.tick x=(RIGHT) y=(H - 6.0) text-anchor="end" { (labels.end) }
            (body)
        }
    }
}

/// One bar per point.
pub fn bars(label: &str, points: &[Point], labels: &Labels) -> Markup {
    let max = scale_max(points);
    let step = (RIGHT - LEFT) / points.len().max(1) as f64;
    let width = (step * 0.8).max(1.0);
    let body = html! {
        @for (i, p) in points.iter().enumerate() {
            @let h = (p.value.max(0.0) / max * (BOTTOM - TOP)).max(if p.value > 0.0 { 1.0 } else { 0.0 });
            rect class=(if p.flagged { "bar f" } else { "bar" })
                x=(fmt1(LEFT + i as f64 * step + (step - width) / 2.0)) y=(fmt1(BOTTOM - h))
                width=(fmt1(width)) height=(fmt1(h)) {
                title { (p.title) }
            }
        }
    };
    frame(label, labels, body)
}

/// A line through the points, a dot at each (with its tooltip).
pub fn line(label: &str, points: &[Point], labels: &Labels) -> Markup {
    let max = scale_max(points);
    let step = (RIGHT - LEFT) / points.len().saturating_sub(1).max(1) as f64;
    let xy: Vec<(String, String)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                fmt1(LEFT + i as f64 * step),
                fmt1(BOTTOM - p.value.max(0.0) / max * (BOTTOM - TOP)),
            )
        })
        .collect();
    let mut path = String::with_capacity(xy.len() * 12);
    for (x, y) in &xy {
        let _ = write!(path, "{x},{y} ");
    }
    let body = html! {
        polyline.line points=(path.trim_end()) {}
        @for ((x, y), p) in xy.iter().zip(points) {
            circle class=(if p.flagged { "dot f" } else { "dot" })
                cx=(x) cy=(y) r="3" {
                title { (p.title) }
            }
        }
    };
    frame(label, labels, body)
}

/// One decimal, no trailing `.0`.
fn fmt1(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Raw SVG text, for tests.
#[cfg(test)]
pub(super) fn text(m: &Markup) -> &str {
    let maud::PreEscaped(s) = m;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_its_maximum() {
        let svg = sparkline(&[0, 5, 10], "rows <per> day");
        let s = text(&svg);
        assert!(s.contains(r#"viewBox="0 0 2 20""#), "{s}");
        assert!(s.contains(r#"points="0,19 1,10 2,1""#), "{s}");
        assert!(s.contains(r#"aria-label="rows &lt;per&gt; day""#), "{s}");
        assert!(!s.contains("style="), "{s}");
    }

    #[test]
    fn sparkline_of_nothing_is_flat() {
        let s = sparkline(&[], "x").into_string();
        assert!(s.contains(r#"points="""#), "{s}");
        let s = sparkline(&[0, 0], "x").into_string();
        assert!(s.contains(r#"points="0,19 1,19""#), "{s}");
    }

    #[test]
    fn bars_and_line_draw_every_point() {
        let points: Vec<Point> = (0..90)
            .map(|i| Point {
                value: f64::from(i),
                title: format!("day {i}"),
                flagged: i == 3,
            })
            .collect();
        let labels = Labels {
            top: "89".into(),
            start: "a".into(),
            end: "b".into(),
        };
        let b = bars("rows", &points, &labels).into_string();
        assert_eq!(b.matches("<rect").count(), 90);
        assert_eq!(b.matches(r#"class="bar f""#).count(), 1);
        assert!(b.contains("<title>day 42</title>"));
        let l = line("secs", &points, &labels).into_string();
        assert_eq!(l.matches("<circle").count(), 90);
        assert!(l.contains("<polyline"));
        assert_eq!(fmt1(2.0), "2");
        assert_eq!(fmt1(2.25), "2.3");
    }
}
