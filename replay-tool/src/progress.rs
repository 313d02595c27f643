//! Progress reporting on stderr: an indicatif bar with rate and ETA when
//! stderr is a terminal, plain counter lines otherwise (logs, CI, tests).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain counter lines are printed.
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Reports the progress of one phase.
#[derive(Debug)]
pub(crate) struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting `label`, out of `total` when known.
    pub(crate) fn start(label: impl Into<String>, total: Option<u64>) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
            } else {
                "{prefix:>12} {pos} {per_sec}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label.clone());
            bar
        });
        let now = Instant::now();
        Self {
            label,
            total,
            done: 0,
            started: now,
            last_line: now,
            bar,
        }
    }

    /// Records `n` more items done.
    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if self.last_line.elapsed() >= PLAIN_INTERVAL {
            self.last_line = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let rate = rate(self.done, self.started.elapsed());
        match self.total {
            Some(total) if total > 0 => {
                let remaining = total.saturating_sub(self.done);
                let eta = if rate > 0.0 {
                    format!("{:.0}s", remaining as f64 / rate)
                } else {
                    "?".into()
                };
                format!(
                    "{}: {}/{} ({:.0}/s, eta {eta})",
                    self.label, self.done, total, rate
                )
            }
            _ => format!("{}: {} ({:.0}/s)", self.label, self.done, rate),
        }
    }

    /// Finishes the phase; returns items done and the elapsed time.
    pub(crate) fn finish(self) -> (u64, Duration) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        (self.done, self.started.elapsed())
    }
}

/// Items per second.
pub(crate) fn rate(items: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { items as f64 / secs } else { 0.0 }
}
