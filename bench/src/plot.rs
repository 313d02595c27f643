//! The figure: Backbone/raw ratios per scenario beside the targets, and the
//! end-to-end latency percentiles per rate.

use std::path::Path;

use plotters::prelude::*;

use super::{
    error::{BenchError, BenchErrorKind},
    report::BenchReport,
};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 520;

/// Writes the figure of `report` to `path` as SVG.
pub(crate) fn write_svg(report: &BenchReport, path: &Path) -> Result<(), BenchError> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    draw(report, &root).map_err(|e| BenchError::with_detail(BenchErrorKind::Io, e.to_string()))?;
    root.present()
        .map_err(|e| BenchError::with_detail(BenchErrorKind::Io, e.to_string()))
}

/// Picks one percentile of a latency row.
type Percentile = fn(&super::report::Latency) -> u64;

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(
    report: &BenchReport,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(WIDTH * 3 / 5);
    draw_ratios(report, &left)?;
    draw_latencies(report, &right)?;
    Ok(())
}

fn draw_ratios<DB: DrawingBackend>(
    report: &BenchReport,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let rows: Vec<(String, f64, f64)> = report
        .comparisons
        .iter()
        .map(|c| {
            (
                format!("{} [{}]", c.label(), c.fsync),
                c.ratio,
                c.target_ratio,
            )
        })
        .collect();
    let max_ratio = rows.iter().map(|r| r.1.max(r.2)).fold(1.2, f64::max) * 1.1;
    let count = rows.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Backbone / raw async-nats (same run, same server)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..max_ratio, -0.5..count - 0.5)?;
    let labels = rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("ratio (1.0 = as fast as raw)")
        .y_labels(rows.len().max(1))
        .y_label_formatter(&|y| {
            // Row i is centred on y = count - 1 - i; ticks between rows stay blank.
            let index = count - 1.0 - y;
            if (index - index.round()).abs() > 0.01 || index < 0.0 {
                return String::new();
            }
            labels
                .get(index.round() as usize)
                .cloned()
                .unwrap_or_default()
        })
        .draw()?;
    for (i, (_, ratio, target)) in rows.iter().enumerate() {
        let centre = count - 1.0 - i as f64;
        let (bottom, top) = (centre - 0.35, centre + 0.35);
        let color = if ratio >= target {
            GREEN.mix(0.7)
        } else {
            RED.mix(0.7)
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, bottom), (*ratio, top)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*target, bottom - 0.1), (*target, top + 0.1)],
            BLACK.stroke_width(2),
        )))?;
    }
    Ok(())
}

fn draw_latencies<DB: DrawingBackend>(
    report: &BenchReport,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(
            "End-to-end latency, open loop (ms, log scale)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (100f64..50_000f64).log_scale(),
            (0.01f64..10_000f64).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("scheduled events per second")
        .y_desc("ms")
        .draw()?;
    let series: [(&str, Percentile, RGBColor); 3] = [
        ("p50", |l| l.p50_us, BLUE),
        ("p99", |l| l.p99_us, MAGENTA),
        ("p99.9", |l| l.p999_us, RED),
    ];
    let mut paths: Vec<(&str, super::server::FsyncPolicy)> = Vec::new();
    for l in &report.latencies {
        if !paths.contains(&(l.path, l.fsync)) {
            paths.push((l.path, l.fsync));
        }
    }
    for (path, fsync) in paths {
        let dashed = path != "backbone";
        for (name, value, color) in series {
            let points: Vec<(f64, f64)> = report
                .latencies
                .iter()
                .filter(|l| l.path == path && l.fsync == fsync)
                .map(|l| (l.rate_per_sec as f64, (value(l) as f64 / 1000.0).max(0.01)))
                .collect();
            let style = if dashed {
                color.mix(0.45).stroke_width(1)
            } else {
                color.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(format!("{path} {name} [{fsync}]"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}
