//! `docs/benchmarks.svg`: wall time and IAM calls against the number of users.

use crate::measure::*;
use crate::write::*;
use crate::CONFIGS;
use plotters::prelude::*;
use std::path::Path;

pub(crate) fn series_style(config: usize) -> (ShapeStyle, ShapeStyle, u32) {
    let (color, hollow) = SERIES_STYLE[config % SERIES_STYLE.len()];
    if hollow {
        (color.stroke_width(2), color.stroke_width(2), 7)
    } else {
        (color.stroke_width(2), color.filled(), 4)
    }
}

/// `mantissas` x 10^n for every n, between `low` and `high`: tick marks of a log axis.
pub(crate) fn log_ticks(low: f64, high: f64, mantissas: &[f64]) -> Vec<f64> {
    let (first, last) = (low.log10().floor() as i32, high.log10().ceil() as i32);
    (first..=last)
        .flat_map(|exponent| mantissas.iter().map(move |m| m * 10f64.powi(exponent)))
        .filter(|v| (low..=high).contains(v))
        .collect()
}

pub(crate) fn tick_label(value: &f64) -> String {
    if *value >= 1.0 {
        count(value.round())
    } else {
        format!("{value}")
    }
}

/// Wall time and IAM calls against users, one line per configuration: medians, with min–max error bars.
pub(crate) fn plot(bench: &Bench, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    type Metric = (&'static str, &'static str, fn(&Run) -> f64);
    let metrics: [Metric; 2] = [
        ("Wall time", "wall time (s, log scale)", |r| {
            r.wall.as_secs_f64()
        }),
        ("IAM calls", "IAM calls (log scale)", |r| {
            iam_calls(&r.calls) as f64
        }),
    ];
    let (width, height) = (1200u32, 560u32);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "keywatch against account size: median of {} run{}, bars from minimum to maximum",
            bench.rounds,
            if bench.rounds == 1 { "" } else { "s" }
        ),
        ("sans-serif", 20),
    )?;
    let (charts, legend) = root.split_vertically(root.dim_in_pixel().1 - 40);
    let sizes: Vec<f64> = bench.sizes.iter().map(|s| s.size as f64).collect();
    let (x_min, x_max) = sizes
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (x_low, x_high) = (x_min / 1.5, x_max * 1.5);
    let ran: Vec<usize> = (0..CONFIGS.len())
        .filter(|&c| bench.runs.iter().any(|r| r.config == c))
        .collect();
    for (panel, (caption, axis, metric)) in charts.split_evenly((1, 2)).iter().zip(metrics) {
        // (configuration, [(users, statistic)]) for the configurations that ran.
        let lines: Vec<(usize, Vec<(f64, Stat)>)> = ran
            .iter()
            .map(|&c| {
                let points = bench
                    .sizes
                    .iter()
                    .filter_map(|s| Some((s.size as f64, bench.stat(s.size, c, metric)?)))
                    .collect();
                (c, points)
            })
            .collect();
        let (y_min, y_max) = lines
            .iter()
            .flat_map(|(_, points)| points.iter().map(|(_, s)| s))
            .fold((f64::MAX, f64::MIN), |(lo, hi), s| {
                (lo.min(s.min), hi.max(s.max))
            });
        let (y_low, y_high) = (y_min.max(1e-3) / 1.5, y_max * 1.5);
        let everything = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut chart = ChartBuilder::on(panel)
            .margin(20)
            .caption(caption, ("sans-serif", 18))
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (x_low..x_high)
                    .log_scale()
                    .with_key_points(log_ticks(x_low, x_high, &[1.0, 2.0, 5.0]))
                    .with_light_points(log_ticks(x_low, x_high, &everything)),
                (y_low..y_high)
                    .log_scale()
                    .with_key_points(log_ticks(y_low, y_high, &[1.0, 2.0, 5.0]))
                    .with_light_points(log_ticks(y_low, y_high, &everything)),
            )?;
        chart
            .configure_mesh()
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .x_desc("IAM users in the account (log scale)")
            .y_desc(axis)
            .bold_line_style(BLACK.mix(0.25))
            .light_line_style(BLACK.mix(0.07))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (c, points) in &lines {
            let (line, marker, radius) = series_style(*c);
            chart.draw_series(LineSeries::new(
                points.iter().map(|(x, s)| (*x, s.median)),
                line,
            ))?;
            chart.draw_series(
                points
                    .iter()
                    .map(|(x, s)| Circle::new((*x, s.median), radius, marker)),
            )?;
            chart.draw_series(points.iter().map(|(x, s)| {
                ErrorBar::new_vertical(*x, s.min, s.median, s.max, line.stroke_width(1), 12)
            }))?;
        }
    }
    // One legend for both panels, below them, so it never hides a point.
    let slot = i32::try_from(width)? / i32::try_from(ran.len().max(1))?;
    for (i, &c) in ran.iter().enumerate() {
        let (line, marker, radius) = series_style(c);
        let x = slot * i32::try_from(i)? + 60;
        legend.draw(&PathElement::new(vec![(x, 20), (x + 36, 20)], line))?;
        legend.draw(&Circle::new((x + 18, 20), radius, marker))?;
        legend.draw(&Text::new(
            format!(
                "{}, concurrency {}",
                CONFIGS[c].source, CONFIGS[c].concurrency
            ),
            (x + 46, 12),
            ("sans-serif", 15),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// Line colour per configuration (by index in [`CONFIGS`]), and whether its markers are hollow: a hollow, larger
/// marker stays visible where another configuration's point lies on top of it.
pub(crate) const SERIES_STYLE: [(RGBColor, bool); 3] = [
    (RGBColor(31, 119, 180), false),
    (RGBColor(255, 127, 14), true),
    (RGBColor(44, 160, 44), false),
];
