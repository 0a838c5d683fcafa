//! Inline SVG line charts for the HTML report: no script, no network, so the page works
//! offline and in any browser, and a test can read it as text.

use maud::{Markup, html};

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// (x, y) in data units, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// An axis: its label and where to put tick marks (data value, text).
#[derive(Debug, Clone, Default)]
pub struct Axis {
    pub label: String,
    pub ticks: Vec<(f64, String)>,
}

/// The route colours, the same in every chart.
pub const PALETTE: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// A chart of `series` over `x` (ticks required; their extent sets the x range) and `y`
/// (ticks optional: from 0 to a rounded maximum when empty). maud escapes every text.
pub fn line_chart(title: &str, series: &[Series], x: &Axis, y: &Axis) -> Markup {
    marked_chart(title, series, x, y, &Marks::default())
}

/// Spans of x to shade behind a chart's lines, each with what it means.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// (from, to) in x's units.
    pub spans: Vec<(f64, f64)>,
    /// The shading's tooltip and legend entry.
    pub label: String,
}

/// `line_chart` with `marks` shaded behind the lines, in the class `saturated`.
pub fn marked_chart(title: &str, series: &[Series], x: &Axis, y: &Axis, marks: &Marks) -> Markup {
    let (x_min, x_max) = extent(x.ticks.iter().map(|t| t.0)).unwrap_or((0.0, 1.0));
    let y_ticks = if y.ticks.is_empty() {
        nice_ticks(
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0, f64::max),
        )
    } else {
        y.ticks.clone()
    };
    let (_, y_max) = extent(y_ticks.iter().map(|t| t.0)).unwrap_or((0.0, 1.0));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |v: f64| LEFT + (v - x_min) / (x_max - x_min).max(f64::EPSILON) * plot_w;
    let sy = |v: f64| TOP + plot_h - (v / y_max.max(f64::EPSILON)).min(1.05) * plot_h;
    let px = |v: f64| format!("{v:.1}");
    let mid_y = TOP + plot_h / 2.0;
    // Elements are closed explicitly: inside HTML, SVG is foreign content, where an
    // unclosed <line> would swallow what follows it.
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
            text x=(LEFT) y="16" class="title" { (title) }
            @for (value, text) in &y_ticks {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(px(sy(*value))) y2=(px(sy(*value))) class="grid" {}
                text x=(LEFT - 4.0) y=(px(sy(*value) + 4.0)) class="tick" text-anchor="end" { (text) }
            }
            @for (value, text) in &x.ticks {
                line x1=(px(sx(*value))) x2=(px(sx(*value))) y1=(TOP) y2=(TOP + plot_h) class="grid" {}
                text x=(px(sx(*value))) y=(TOP + plot_h + 14.0) class="tick" text-anchor="middle" { (text) }
            }
            @for (from, to) in marks.spans.iter().filter(|(from, to)| *to > x_min && *from < x_max) {
                @let (from, to) = (sx(from.max(x_min)), sx(to.min(x_max)));
                rect x=(px(from)) y=(TOP) width=(px((to - from).max(1.0))) height=(px(plot_h)) class="saturated" {
                    title { (marks.label) }
                }
            }
            @if !marks.spans.is_empty() {
                text x=(WIDTH - RIGHT) y="16" class="legend" text-anchor="end" { "shaded: " (marks.label) }
            }
            text x=(LEFT + plot_w / 2.0) y=(HEIGHT - 6.0) class="axis" text-anchor="middle" { (x.label) }
            text x="12" y=(mid_y) class="axis" transform=(format!("rotate(-90 12 {mid_y})")) text-anchor="middle" { (y.label) }
            @for (i, s) in series.iter().enumerate().filter(|(_, s)| !s.points.is_empty()) {
                @let points: Vec<String> = s
                    .points
                    .iter()
                    .filter(|(x, _)| *x >= x_min && *x <= x_max)
                    .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                    .collect();
                @let lx = LEFT + 8.0 + (i as f64) * 120.0;
                polyline points=(points.join(" ")) fill="none" stroke=(s.color) stroke-width="1.8" {
                    title { (s.name) }
                }
                rect x=(px(lx)) y=(TOP + 4.0) width="10" height="3" fill=(s.color) {}
                text x=(px(lx + 14.0)) y=(TOP + 9.0) class="legend" { (s.name) }
            }
        }
    }
}

/// The x position of a percentile on HdrHistogram's "nines" axis: 90% -> 1, 99% -> 2.
pub fn nines(percentile: f64) -> f64 {
    let remaining = (1.0 - percentile / 100.0).max(1e-6);
    -remaining.log10()
}

/// Ticks of the nines axis up to `max_nines`: 0%, 90%, 99%, 99.9%, ...
pub fn nines_axis(max_nines: usize) -> Axis {
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];
    Axis {
        label: "percentile".into(),
        ticks: (0..=max_nines.min(5))
            .map(|n| (n as f64, labels[n].to_string()))
            .collect(),
    }
}

fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Four or five round ticks from 0 covering `max`.
pub fn nice_ticks(max: f64) -> Vec<(f64, String)> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let mut ticks = Vec::new();
    let mut value = 0.0;
    while value < max + step * 0.999 {
        ticks.push((value, trim(value)));
        value += step;
    }
    ticks
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_positions() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_axis(3).ticks.last().unwrap().1, "99.9%");
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        let ticks = nice_ticks(37.0);
        assert_eq!(ticks.first().unwrap().0, 0.0);
        assert!(ticks.last().unwrap().0 >= 37.0);
        assert!(
            ticks.iter().all(|(v, _)| (v / 10.0).fract() == 0.0),
            "{ticks:?}"
        );
    }

    #[test]
    fn a_chart_draws_each_series_and_escapes_text() {
        let series = [Series {
            name: "a<b".into(),
            color: PALETTE[0],
            points: vec![(0.0, 1.0), (1.0, 2.0)],
        }];
        let svg = line_chart(
            "t&t",
            &series,
            &Axis {
                label: "x".into(),
                ticks: vec![(0.0, "0".into()), (1.0, "1".into())],
            },
            &Axis::default(),
        )
        .into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("a&lt;b") && svg.contains("t&amp;t"));
    }
}
