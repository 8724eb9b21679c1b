//! A picture of one run: for each row, how many times better multiproc is than Python's
//! `multiprocessing` and than the row's reference (a floor or a peer), as bars on a log scale
//! (1x = as good; longer = better). Plain SVG, no dependencies, so the README can show it.

use crate::harness::Row;

const ROW_H: f64 = 26.0;
const LABEL_W: f64 = 400.0;
const PLOT_W: f64 = 560.0;
const TOP: f64 = 56.0;
/// The scale runs from 1/10 to 10^4 times.
const LOG_MIN: f64 = -1.0;
const LOG_MAX: f64 = 4.0;

fn x_of(ratio: f64) -> f64 {
    let l = ratio.max(1e-9).log10().clamp(LOG_MIN, LOG_MAX);
    LABEL_W + (l - LOG_MIN) / (LOG_MAX - LOG_MIN) * PLOT_W
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart for `rows` with `title` (e.g. the date, commit and machine of the run).
pub fn svg(rows: &[Row], title: &str) -> String {
    let width = LABEL_W + PLOT_W + 90.0;
    let height = TOP + ROW_H * rows.len() as f64 + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n\
         <rect x=\"10\" y=\"30\" width=\"12\" height=\"10\" fill=\"#2b6cb0\"/>\
         <text x=\"26\" y=\"39\">times better than Python's multiprocessing</text>\n\
         <rect x=\"300\" y=\"30\" width=\"12\" height=\"10\" fill=\"#dd6b20\"/>\
         <text x=\"316\" y=\"39\">times better than the reference (floor or peer; &lt;1 = behind)</text>\n",
        escape(title)
    );
    // Grid lines at each power of ten.
    let bottom = TOP + ROW_H * rows.len() as f64;
    for p in (LOG_MIN as i32)..=(LOG_MAX as i32) {
        let x = x_of(10f64.powi(p));
        let label = if p < 0 {
            format!("{}x", 10f64.powi(p))
        } else {
            format!("{}x", 10u64.pow(p as u32))
        };
        let stroke = if p == 0 { "#000" } else { "#ccc" };
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{stroke}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            bottom + 16.0
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LABEL_W - 8.0,
            y + 16.0,
            escape(&r.name)
        ));
        let bars = [
            (r.baseline.map(|b| r.advantage(b)), "#2b6cb0", 3.0),
            (
                r.reference.as_ref().map(|(_, v)| r.advantage(*v)),
                "#dd6b20",
                13.0,
            ),
        ];
        for (ratio, color, dy) in bars {
            let Some(ratio) = ratio.filter(|v| v.is_finite() && *v > 0.0) else {
                continue;
            };
            let (x0, x1) = (x_of(1.0), x_of(ratio));
            let (left, w) = (x0.min(x1), (x1 - x0).abs().max(1.0));
            s.push_str(&format!(
                "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"9\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>\n",
                y + dy,
                x0.max(x1) + 4.0,
                y + dy + 8.0,
                fmt_ratio(ratio)
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Better;

    #[test]
    fn bars_scale_and_text_is_escaped() {
        let rows = [
            Row {
                name: "queue <64 B> & more".into(),
                unit: "msg/s",
                better: Better::Higher,
                ours: 1000.0,
                baseline: Some(10.0),
                reference: Some(("peer".into(), 2000.0)),
            },
            Row {
                name: "no baseline".into(),
                unit: "us",
                better: Better::Lower,
                ours: 1.0,
                baseline: None,
                reference: None,
            },
        ];
        let s = svg(&rows, "run of today");
        assert!(s.contains("queue &lt;64 B&gt; &amp; more"));
        assert!(s.contains(">100x<"), "the Python bar is labelled 100x");
        assert!(s.contains(">0.50x<"), "the peer bar is labelled 0.50x");
        assert_eq!(
            s.matches("<rect").count(),
            1 + 2 + 2,
            "background, legend, two bars"
        );
        assert!((x_of(1.0) - (LABEL_W + PLOT_W / 5.0)).abs() < 1e-9);
        assert_eq!(x_of(1e9), LABEL_W + PLOT_W, "off the scale is clamped");
    }
}
