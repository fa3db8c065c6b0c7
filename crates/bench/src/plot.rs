//! Latency CDF plots as hand-written SVG: x = latency on a log scale,
//! y = fraction of requests at or below it, one step curve per system.
//!
//! Hand-written because the figure is simple (axes, ticks, a grid, step
//! curves, a legend) and the output is a text file reviewed in git: a
//! plotting library would add a dependency tree for what fits on a page.

use std::fmt::Write as _;

/// One curve: a label for the legend, a stroke colour, and the samples.
pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// Latencies in microseconds, in any order.
    pub samples_us: Vec<f64>,
}

/// Colours of the two systems, the same in every plot.
pub const TENURE_COLOR: &str = "#1f63b4";
pub const ETCD_COLOR: &str = "#d0362b";

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 62.0;

/// Escape text for SVG content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A latency in microseconds, the way a tick label or legend shows it.
pub fn duration_label(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    // Three significant digits at most, no trailing zeros.
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text} {unit}")
}

/// The 1-2-5 steps: 1, 2, 5, 10, 20, 50, ... (× 10^k for any k).
fn step_125(k: i32) -> f64 {
    [1.0, 2.0, 5.0][k.rem_euclid(3) as usize] * 10f64.powi(k.div_euclid(3))
}

/// The index of the largest 1-2-5 step at or below `v` (v > 0).
fn step_below(v: f64) -> i32 {
    let mut k = (v.log10().floor() as i32) * 3;
    while step_125(k + 1) <= v * (1.0 + 1e-9) {
        k += 1;
    }
    while step_125(k) > v * (1.0 + 1e-9) {
        k -= 1;
    }
    k
}

/// The x range, in microseconds: from the 1-2-5 step at or below the
/// fastest sample to the one at or above the slowest.
pub fn x_range(series: &[Series]) -> (f64, f64) {
    let all = series.iter().flat_map(|s| s.samples_us.iter().copied());
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in all {
        let v = v.max(1.0);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1e2, 1e4);
    }
    let lo_k = step_below(lo);
    let mut hi_k = step_below(hi);
    if step_125(hi_k) < hi * (1.0 - 1e-9) || hi_k == lo_k {
        hi_k += 1;
    }
    (step_125(lo_k), step_125(hi_k))
}

/// Tick positions (µs) from `lo` to `hi`: every 1-2-5 step when the range
/// spans at most four decades, else every decade. The bool says whether
/// the tick is a decade (its grid line is drawn darker).
pub fn x_ticks(lo: f64, hi: f64) -> Vec<(f64, bool)> {
    let dense = hi / lo <= 1e4 * (1.0 + 1e-9);
    let mut ticks = Vec::new();
    let mut k = step_below(lo);
    while step_125(k) <= hi * (1.0 + 1e-9) {
        let v = step_125(k);
        let decade = k.rem_euclid(3) == 0;
        if v >= lo * (1.0 - 1e-9) && (dense || decade) {
            ticks.push((v, decade));
        }
        k += 1;
    }
    ticks
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The SVG document: title, subtitle, one step curve per series.
pub fn cdf_svg(title: &str, subtitle: &str, series: &[Series]) -> String {
    let (lo, hi) = x_range(series);
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |us: f64| LEFT + (us.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * pw;
    let y = |frac: f64| TOP + (1.0 - frac) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", esc(title));
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="40" fill="#555">{}</text>"##,
        esc(subtitle)
    );

    // Grid and ticks.
    let _ = writeln!(s, r#"<g class="x-ticks" text-anchor="middle">"#);
    for (v, decade) in x_ticks(lo, hi) {
        let px = x(v);
        let stroke = if decade { "#c8c8c8" } else { "#ececec" };
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="{stroke}"/>"#,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="black"/>"#,
            TOP + ph,
            TOP + ph + 5.0
        );
        let _ = writeln!(
            s,
            r#"<text class="tick" x="{px:.1}" y="{:.1}">{}</text>"#,
            TOP + ph + 18.0,
            esc(&duration_label(v))
        );
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(s, r#"<g class="y-ticks" text-anchor="end">"#);
    for i in 0..=10 {
        let frac = i as f64 / 10.0;
        let py = y(frac);
        let stroke = if i % 5 == 0 { "#c8c8c8" } else { "#ececec" };
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{stroke}"/>"#,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{py:.1}" x2="{LEFT}" y2="{py:.1}" stroke="black"/>"#,
            LEFT - 5.0
        );
        let _ = writeln!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT - 8.0,
            py + 4.0,
            match i {
                0 => "0".to_string(),
                10 => "1".to_string(),
                _ => format!("{frac:.1}"),
            }
        );
    }
    let _ = writeln!(s, "</g>");
    // The median and p99 as dashed guides, named at the right.
    for (frac, name) in [(0.5, "p50"), (0.99, "p99")] {
        let py = y(frac);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#888" stroke-dasharray="4 3"/>"##,
            LEFT + pw
        );
        // At the left, where a CDF is still low and nothing is drawn;
        // under the line, clear of the frame at 1.
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#666" font-size="10">{name}</text>"##,
            LEFT + 4.0,
            py + 11.0
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">latency (log scale)</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 18 {:.1})">fraction of requests at or below</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );

    // The curves.
    for se in series {
        let mut sorted = se.samples_us.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            continue;
        }
        let n = sorted.len() as f64;
        let mut points: Vec<(f64, f64)> = vec![(x(sorted[0]), y(0.0))];
        let mut i = 0;
        while i < sorted.len() {
            // Samples that land on the same half pixel make one step.
            let px = (x(sorted[i]) * 2.0).round() / 2.0;
            let before = i as f64 / n;
            while i < sorted.len() && (x(sorted[i]) * 2.0).round() / 2.0 == px {
                i += 1;
            }
            points.push((px, y(before)));
            points.push((px, y(i as f64 / n)));
        }
        points.push((LEFT + pw, y(1.0)));
        let mut text = String::new();
        for (k, (px, py)) in points.iter().enumerate() {
            if k > 0 {
                text.push(' ');
            }
            let _ = write!(text, "{px:.1},{py:.1}");
        }
        let _ = writeln!(
            s,
            r#"<polyline class="cdf" data-series="{}" fill="none" stroke="{}" stroke-width="2" points="{text}"/>"#,
            esc(&se.label),
            se.color
        );
    }

    // The legend, in the empty lower right of a CDF.
    let rows = series.len() as f64;
    let (lw, lh) = (330.0, 14.0 + 18.0 * rows);
    let (lx, ly) = (LEFT + pw - lw - 10.0, TOP + ph - lh - 10.0);
    let _ = writeln!(s, r#"<g class="legend">"#);
    let _ = writeln!(
        s,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="{lw}" height="{lh}" fill="white" fill-opacity="0.92" stroke="#999"/>"##
    );
    for (k, se) in series.iter().enumerate() {
        let mut sorted = se.samples_us.clone();
        sorted.sort_by(f64::total_cmp);
        let row = ly + 16.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/>"#,
            lx + 10.0,
            row - 4.0,
            lx + 36.0,
            row - 4.0,
            se.color
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{row:.1}">{}</text>"#,
            lx + 44.0,
            esc(&format!(
                "{}: n {}, p50 {}, p99 {}",
                se.label,
                sorted.len(),
                duration_label(percentile(&sorted, 0.5)),
                duration_label(percentile(&sorted, 0.99))
            ))
        );
    }
    let _ = writeln!(s, "</g>");
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags open and close in order; attributes are quoted; text has no
    /// bare `<` or `&`. Returns the element names in document order.
    fn check_well_formed(doc: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(
                !text.contains('>'),
                "stray '>' in text {text:?}, or a tag not closed"
            );
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            let close = rest[open..].find('>').expect("tag without '>'") + open;
            let tag = &rest[open + 1..close];
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            assert!(!tag.contains('<'), "'<' inside <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                assert!(!name.is_empty(), "empty tag <{tag}>");
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        names
    }

    fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
        let key = format!(" {name}=\"");
        let at = tag
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {tag}"))
            + key.len();
        let end = tag[at..].find('"').unwrap() + at;
        &tag[at..end]
    }

    fn two_series() -> Vec<Series> {
        // 1000 samples from 300 µs to about 30 ms, and 200 from 1 to 2 ms.
        let a = (0..1000).map(|i| 300.0 * 1.0046f64.powi(i)).rev().collect();
        let b = (0..200).map(|i| 1000.0 + 5.0 * i as f64).collect();
        vec![
            Series {
                label: "tenure".into(),
                color: TENURE_COLOR,
                samples_us: a,
            },
            Series {
                label: "etcd <gateway> & co".into(),
                color: ETCD_COLOR,
                samples_us: b,
            },
        ]
    }

    #[test]
    fn the_document_is_well_formed_svg() {
        let doc = cdf_svg("acquire", "sequential, one client", &two_series());
        let names = check_well_formed(&doc);
        assert_eq!(names[0], "svg");
        assert!(doc.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#));
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 2);
        assert!(names.iter().any(|n| n == "title"));
        // Labels are escaped, in the legend and on the curve.
        assert!(doc.contains("etcd &lt;gateway&gt; &amp; co"));
        assert!(!doc.contains("<gateway>"));
    }

    #[test]
    fn curves_are_monotone_and_span_zero_to_one() {
        let doc = cdf_svg("acquire", "", &two_series());
        let mut curves = 0;
        for line in doc.lines().filter(|l| l.starts_with("<polyline")) {
            curves += 1;
            let points: Vec<(f64, f64)> = attr(line, "points")
                .split(' ')
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert!(points.len() >= 4);
            for w in points.windows(2) {
                assert!(w[1].0 >= w[0].0, "x goes back: {w:?}");
                // SVG y grows downwards: a rising CDF never goes down.
                assert!(w[1].1 <= w[0].1, "CDF falls: {w:?}");
            }
            // From fraction 0 (the plot's bottom) to 1 (its top), ending at
            // the right edge.
            assert_eq!(points[0].1, TOP + (HEIGHT - TOP - BOTTOM));
            assert_eq!(points.last().unwrap().1, TOP);
            assert_eq!(points.last().unwrap().0, WIDTH - RIGHT);
            // Merged to at most two points per half pixel, plus the ends.
            assert!(points.len() <= 2 * 2 * (WIDTH as usize) + 2);
        }
        assert_eq!(curves, 2);
    }

    #[test]
    fn axes_carry_decade_ticks_and_fraction_ticks() {
        let doc = cdf_svg("acquire", "", &two_series());
        let ticks: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with(r#"<text class="tick""#))
            .map(|l| {
                let start = l.find('>').unwrap() + 1;
                &l[start..l.rfind("</text>").unwrap()]
            })
            .collect();
        // Samples from 300 µs to about 29 ms: 1-2-5 steps from 200 µs to
        // 50 ms.
        for label in [
            "200 µs", "500 µs", "1 ms", "2 ms", "5 ms", "10 ms", "20 ms", "50 ms",
        ] {
            assert!(ticks.contains(&label), "no x tick {label}: {ticks:?}");
        }
        assert!(!ticks.contains(&"100 µs") && !ticks.contains(&"100 ms"));
        for label in ["0", "0.5", "1"] {
            assert!(ticks.contains(&label), "no y tick {label}");
        }
        assert_eq!(ticks.len(), 8 + 11);
        assert!(doc.contains("latency (log scale)"));
        assert!(doc.contains("fraction of requests"));
    }

    #[test]
    fn ticks_and_labels() {
        assert_eq!(x_range(&two_series()), (200.0, 50_000.0));
        let t = x_ticks(200.0, 50_000.0);
        assert_eq!(t.first(), Some(&(200.0, false)));
        assert_eq!(t.last(), Some(&(50_000.0, false)));
        assert_eq!(t.iter().filter(|(_, d)| *d).count(), 2);
        // Exact steps stay put; one sample still gets a range.
        let one = |v: f64| {
            x_range(&[Series {
                label: String::new(),
                color: TENURE_COLOR,
                samples_us: vec![v],
            }])
        };
        assert_eq!(one(1000.0), (1000.0, 2000.0));
        assert_eq!(one(3000.0), (2000.0, 5000.0));
        assert_eq!(step_below(999.0), step_below(500.0));
        // Wide ranges keep only the decades.
        assert!(x_ticks(1.0, 1e7).iter().all(|(_, d)| *d));
        assert_eq!(duration_label(250.0), "250 µs");
        assert_eq!(duration_label(1000.0), "1 ms");
        assert_eq!(duration_label(3251.0), "3.25 ms");
        assert_eq!(duration_label(10815.0), "10.8 ms");
        assert_eq!(duration_label(2_000_000.0), "2 s");
        assert_eq!(esc(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn an_empty_series_draws_no_curve_but_keeps_its_legend() {
        let series = vec![Series {
            label: "nothing".into(),
            color: TENURE_COLOR,
            samples_us: vec![],
        }];
        let doc = cdf_svg("empty", "", &series);
        check_well_formed(&doc);
        assert!(!doc.contains("<polyline"));
        assert!(doc.contains("nothing: n 0"));
    }
}
