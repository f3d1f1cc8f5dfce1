//! A small hand-written SVG line chart (no plotting dependency): numeric axes with ticks (the x
//! axis linear or in powers of two), one line with point markers per series, and a legend.

use std::fmt::Write as _;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// The points, drawn in x order.
    pub points: Vec<(f64, f64)>,
}

/// How x values are placed along the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    /// Evenly: equal differences take equal room.
    Linear,
    /// By their base-2 logarithm: each doubling takes equal room, ticks at powers of two (for
    /// batch sizes such as 1, 16, 64, 256). Points with x ≤ 0 are left out.
    Log2,
}

impl XScale {
    /// Where `x` lies on the axis before scaling to pixels; `None` if it cannot be drawn.
    fn place(self, x: f64) -> Option<f64> {
        match self {
            XScale::Linear => x.is_finite().then_some(x),
            XScale::Log2 => (x.is_finite() && x > 0.0).then(|| x.log2()),
        }
    }
}

/// The chart's texts and x scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chart<'a> {
    /// The title above the plot.
    pub title: &'a str,
    /// The x axis label.
    pub x_label: &'a str,
    /// The y axis label.
    pub y_label: &'a str,
    /// How x values are placed.
    pub x_scale: XScale,
}

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// `v` in full when it is a whole number (a batch size of 1024 stays "1024"), else as [`label`].
fn exact(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        label(v)
    }
}

/// Tick step of about `span / 5`, rounded to 1, 2 or 5 × 10^k.
fn nice_step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn label(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let k = v / 1000.0;
        if k.fract() == 0.0 {
            format!("{k}k")
        } else {
            format!("{k:.1}k")
        }
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

/// The chart as an SVG document. The x axis spans the points' x range (on a linear scale,
/// integer ticks when every x is an integer; on a log2 scale, ticks at powers of two), the y
/// axis starts at 0. Points that cannot be placed (not finite, or x ≤ 0 on a log2 scale) are
/// left out.
pub fn line_chart(chart: &Chart, series: &[Series]) -> String {
    let Chart {
        title,
        x_label,
        y_label,
        x_scale,
    } = *chart;
    // every drawable point, with x already placed on the axis
    let placed: Vec<Vec<(f64, f64, f64)>> = series
        .iter()
        .map(|s| {
            let mut pts: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .filter_map(|&(x, y)| x_scale.place(x).map(|t| (t, x, y)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts
        })
        .collect();
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(t, _, y) in placed.iter().flatten() {
        x0 = x0.min(t);
        x1 = x1.max(t);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1.0 {
        // a single x: centre it in a unit-wide axis
        x0 -= 0.5;
        x1 += 0.5;
    }
    let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 });
    let ymax = (y1 / ystep).ceil().max(1.0) * ystep;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - y / ymax * ph;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // y grid and ticks
    let mut y = 0.0;
    while y <= ymax + ystep / 2.0 {
        let py = sy(y);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            py + 4.0,
            label(y)
        );
        y += ystep;
    }
    for (px, text) in x_ticks(x_scale, x0, x1, &placed) {
        let px = sx(px);
        let _ = writeln!(
            o,
            r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="black"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 20.0,
            text
        );
    }
    // axes and their labels
    let _ = writeln!(
        o,
        r#"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
        TOP + ph,
        LEFT + pw
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 15.0,
        esc(x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
    // series and legend
    for (i, (s, pts)) in series.iter().zip(&placed).enumerate() {
        let color = COLORS[i % COLORS.len()];
        if pts.len() > 1 {
            let path: Vec<String> = pts
                .iter()
                .map(|&(t, _, y)| format!("{:.1},{:.1}", sx(t), sy(y)))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for &(t, x, y) in pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"><title>{}, {} {}: {}</title></circle>"#,
                sx(t),
                sy(y),
                esc(&s.name),
                esc(x_label),
                exact(x),
                label(y.round())
            );
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = W - RIGHT + 20.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><circle cx="{}" cy="{ly}" r="4" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 12.0,
            lx + 30.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The x ticks as (axis position, text), between `x0` and `x1` (axis positions). Linear:
/// about five "nice" steps, whole numbers when every x is one. Log2: powers of two, every
/// second (or further) one when more than ten would fit.
fn x_ticks(scale: XScale, x0: f64, x1: f64, placed: &[Vec<(f64, f64, f64)>]) -> Vec<(f64, String)> {
    let mut ticks = Vec::new();
    match scale {
        XScale::Linear => {
            let integral = placed.iter().flatten().all(|p| p.1.fract() == 0.0);
            let step = if integral {
                nice_step(x1 - x0).max(1.0).round()
            } else {
                nice_step(x1 - x0)
            };
            let mut x = (x0 / step).ceil() * step;
            while x <= x1 + 1e-9 {
                ticks.push((x, label(x)));
                x += step;
            }
        }
        XScale::Log2 => {
            let (k0, k1) = (x0.ceil() as i64, x1.floor() as i64);
            let step = ((k1 - k0 + 1) as f64 / 10.0).ceil().max(1.0) as usize;
            for k in (k0..=k1).step_by(step) {
                ticks.push((k as f64, exact(2f64.powi(k as i32))));
            }
        }
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(100.0), 20.0);
        assert_eq!(nice_step(23_000.0), 5000.0);
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    fn chart(x_scale: XScale) -> Chart<'static> {
        Chart {
            title: "t",
            x_label: "shards",
            y_label: "handshakes/s",
            x_scale,
        }
    }

    /// The `cx` of every point marker (the legend's markers have integer `cx`, no decimals).
    fn marker_xs(svg: &str) -> Vec<f64> {
        svg.lines()
            .filter(|l| l.starts_with("<circle"))
            .map(|l| {
                let v = &l[l.find("cx=\"").unwrap() + 4..];
                v[..v.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn chart_has_axes_lines_and_legend() {
        let s = vec![
            Series {
                name: "batch 1".into(),
                points: vec![(1.0, 1000.0), (2.0, 1500.0)],
            },
            Series {
                name: "batch <64>".into(),
                points: vec![(2.0, 2500.0), (1.0, 2000.0)],
            },
        ];
        let svg = line_chart(&chart(XScale::Linear), &s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("batch &lt;64&gt;"));
        assert!(svg.contains(">shards<") && svg.contains(">handshakes/s<"));
        // y axis tops out at a tick ≥ the max, and the 2.5k tick is labelled
        assert!(svg.contains(">2.5k<") || svg.contains(">3k<"), "{svg}");
        // the points span the plot: x 1 at its left edge, x 2 at its right
        assert_eq!(marker_xs(&svg), vec![LEFT, W - RIGHT, LEFT, W - RIGHT]);
        // one x value only: markers, no line
        let one = line_chart(
            &chart(XScale::Linear),
            &[Series {
                name: "a".into(),
                points: vec![(1.0, 5.0)],
            }],
        );
        assert_eq!(one.matches("<polyline").count(), 0);
        assert_eq!(one.matches("<circle").count(), 2);
    }

    #[test]
    fn log2_axis_gives_each_doubling_equal_room() {
        let s = [Series {
            name: "1 shard".into(),
            // x = 0 cannot be placed on a log scale and is left out
            points: vec![
                (256.0, 4.0),
                (1.0, 1.0),
                (16.0, 2.0),
                (64.0, 3.0),
                (0.0, 9.0),
            ],
        }];
        let svg = line_chart(&chart(XScale::Log2), &s);
        let pw = W - LEFT - RIGHT;
        // log2: 0, 4, 6, 8 of 0..8
        let want: Vec<f64> = [0.0, 4.0, 6.0, 8.0]
            .iter()
            .map(|k| ((LEFT + k / 8.0 * pw) * 10.0).round() / 10.0)
            .collect();
        assert_eq!(marker_xs(&svg), want, "{svg}");
        // ticks at every power of two from 1 to 256, labelled in full
        for v in [1, 2, 4, 8, 16, 32, 64, 128, 256] {
            assert!(svg.contains(&format!(">{v}</text>")), "tick {v}: {svg}");
        }
        assert!(
            svg.contains("<title>1 shard, shards 256: 4</title>"),
            "{svg}"
        );
        // more than ten powers: every second one
        let wide = [Series {
            name: "a".into(),
            points: vec![(1.0, 1.0), (4096.0, 2.0)],
        }];
        let svg = line_chart(&chart(XScale::Log2), &wide);
        assert!(svg.contains(">4096</text>") && svg.contains(">1024</text>"));
        assert!(!svg.contains(">2048</text>"), "{svg}");
    }
}
