//! A progress bar for long commands (`salvage`), on stderr and only when
//! stderr is a terminal: redirected output and tests see none of it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use journalstore::inspect::SalvageProgress;

/// One bar, restyled per phase; a no-op unless stderr is a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
    phase: &'static str,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            bar: std::io::stderr().is_terminal().then(ProgressBar::hidden),
            phase: "",
        }
    }

    pub fn update(&mut self, p: SalvageProgress) {
        let Some(bar) = &mut self.bar else { return };
        if p.phase != self.phase {
            bar.finish_and_clear();
            let unit = if p.phase == "scan" {
                "{bytes}/{total_bytes}"
            } else {
                "{pos}/{len}"
            };
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:>7}} [{{bar:40}}] {unit} {{elapsed}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            *bar = ProgressBar::new(p.total).with_style(style);
            bar.set_prefix(p.phase);
            self.phase = p.phase;
        }
        bar.set_length(p.total);
        bar.set_position(p.done);
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
