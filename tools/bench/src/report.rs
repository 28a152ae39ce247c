//! The results as Markdown (pure).

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Report {
    pub header: Vec<(String, String)>,
    pub tables: Vec<Table>,
}

#[derive(Debug)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines under the table: how it was measured, what is not met and why.
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::from("# Polystream benchmark results\n\n");
        s.push_str("Written by `./dev bench` (tools/bench); every figure below comes from the same invocation.\n\n");
        for (k, v) in &self.header {
            let _ = writeln!(s, "- **{k}**: {v}");
        }
        for t in &self.tables {
            let _ = write!(s, "\n## {}\n\n| {} |\n|", t.title, t.columns.join(" | "));
            for _ in &t.columns {
                s.push_str("---|");
            }
            s.push('\n');
            for r in &t.rows {
                let _ = writeln!(s, "| {} |", r.join(" | "));
            }
            if !t.notes.is_empty() {
                s.push('\n');
                for n in &t.notes {
                    let _ = writeln!(s, "- {n}");
                }
            }
        }
        s
    }
}

/// `12 345/s`-style rate.
pub fn rate(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    format!("{out}/s")
}

/// Milliseconds with sensible precision, or `–`.
pub fn ms(d: Option<Duration>) -> String {
    match d {
        None => "–".into(),
        Some(d) => {
            let m = d.as_secs_f64() * 1000.0;
            if m < 10.0 {
                format!("{m:.2} ms")
            } else if m < 1000.0 {
                format!("{m:.1} ms")
            } else {
                format!("{:.2} s", m / 1000.0)
            }
        }
    }
}

/// ✅ when `ok`, else ❌.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "✅ met" } else { "❌ not met" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rates_and_durations() {
        assert_eq!(rate(1234567.4), "1\u{202f}234\u{202f}567/s");
        assert_eq!(rate(999.0), "999/s");
        assert_eq!(ms(Some(Duration::from_micros(1500))), "1.50 ms");
        assert_eq!(ms(Some(Duration::from_millis(150))), "150.0 ms");
        assert_eq!(ms(Some(Duration::from_millis(2500))), "2.50 s");
        assert_eq!(ms(None), "–");
    }

    #[test]
    fn renders_a_table_with_notes() {
        let mut r = Report::default();
        r.header.push(("commit".into(), "abc".into()));
        let mut t = Table::new("S1", &["what", "value"]);
        t.row(vec!["a".into(), "1".into()]);
        t.note("why");
        r.tables.push(t);
        let md = r.markdown();
        assert!(md.contains("- **commit**: abc"), "{md}");
        assert!(
            md.contains("## S1\n\n| what | value |\n|---|---|\n| a | 1 |\n\n- why\n"),
            "{md}"
        );
    }
}
