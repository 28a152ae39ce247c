//! The command line every Polystream binary shares: `--version`, and a
//! `--help` that lists every environment variable the binary reads with its
//! default.
//!
//! The list is not written by hand: [`settings`] runs the service's own
//! `Config::read` (and telemetry's) against an empty environment and takes
//! what the [`Reader`] was asked for ([`Reader::described`]), so a variable
//! added to the code shows up in `--help` by construction. The tests of each
//! service then hold `--help` against docs/configuration.md with
//! [`documented`] and [`mismatches`].

pub use clap;

use crate::config::{DefaultValue, Described, Reader, Source};
use crate::telemetry::TelemetryConfig;

/// The environment a configuration is read from to describe it: nothing set,
/// or a probe's few variables.
#[derive(Debug, Clone, Copy)]
pub struct Probe(&'static [(&'static str, &'static str)]);

impl Source for Probe {
    fn get(&self, var: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Environments besides the empty one that reach the reads made only under a
/// condition: telemetry reads `OTEL_TRACES_SAMPLER_ARG` only for a ratio
/// sampler. A variable read only after another has some value needs a probe
/// here, or `--help` (and the docs test) would miss it.
const PROBES: &[Probe] = &[Probe(&[("OTEL_TRACES_SAMPLER", "traceidratio")])];

/// `RUST_LOG` is read by `tracing_subscriber`'s `EnvFilter`, not through a
/// [`Reader`]; its fallback is the `"info"` in [`crate::telemetry::init_with`].
const RUST_LOG: (&str, &str) = ("RUST_LOG", "info");

/// Every variable `read` asks for, then telemetry's (`OTEL_*` with `service`
/// as the default service name, `RUST_LOG`), each once, with its default.
/// `read` runs against an empty environment, then against each probe; a
/// [`Reader`] records defaults, not values, so every run agrees on them.
pub fn settings(service: &str, read: impl Fn(&mut Reader<Probe>)) -> Vec<Described> {
    let mut all: Vec<Described> = Vec::new();
    for probe in std::iter::once(Probe(&[])).chain(PROBES.iter().copied()) {
        let mut r = Reader::new(probe);
        read(&mut r);
        TelemetryConfig::read(&mut r, service);
        for d in r.described() {
            if !all.iter().any(|a| a.var == d.var) {
                all.push(d.clone());
            }
        }
    }
    if !all.iter().any(|d| d.var == RUST_LOG.0) {
        all.push(Described {
            var: RUST_LOG.0.to_owned(),
            default: DefaultValue::Value(RUST_LOG.1.to_owned()),
        });
    }
    all
}

/// The heading of the variable list in `--help`; [`parse_help`] looks for it.
pub const HELP_HEADING: &str = "Environment variables and their defaults";

/// How a default reads in `--help` and in docs/configuration.md.
fn default_text(d: &DefaultValue) -> String {
    match d {
        DefaultValue::Value(v) => v.clone(),
        DefaultValue::Unset => "unset".to_owned(),
        DefaultValue::Required => "required".to_owned(),
    }
}

/// The `--help` section listing `settings`, one `NAME  default` line each.
pub fn render(settings: &[Described]) -> String {
    let width = settings.iter().map(|d| d.var.len()).max().unwrap_or(0);
    let mut out = format!(
        "{HELP_HEADING} (every one optional unless marked required; \
         docs/configuration.md explains each):\n"
    );
    for d in settings {
        out.push_str(&format!(
            "  {:width$}  {}\n",
            d.var,
            default_text(&d.default)
        ));
    }
    out
}

/// The variables and defaults listed in a `--help` text made by [`render`].
pub fn parse_help(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| !l.starts_with(HELP_HEADING))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let (var, default) = l.trim().split_once(char::is_whitespace)?;
            Some((var.to_owned(), default.trim().to_owned()))
        })
        .collect()
}

/// `0.1.0`, or `0.1.0 (rev abc1234)` when the build set `POLYSTREAM_GIT_REVISION`.
pub fn version() -> &'static str {
    const VERSION: &str = env!("CARGO_PKG_VERSION");
    match option_env!("POLYSTREAM_GIT_REVISION") {
        Some(rev) if !rev.is_empty() => String::leak(format!("{VERSION} (rev {rev})")),
        _ => VERSION,
    }
}

/// A binary's command: `--version`, and `--help` ending with the variable
/// list. Add the binary's own flags to it.
pub fn command(name: &'static str, about: &'static str, settings: &[Described]) -> clap::Command {
    clap::Command::new(name)
        .about(about)
        .version(version())
        .after_help(render(settings))
}

/// The backticked spans of a Markdown table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows (variable column, default column, meaning column) of the first
/// table under the `## {section}` heading.
fn table_rows<'a>(markdown: &'a str, section: &str) -> Result<Vec<[String; 3]>, String> {
    let heading = format!("## {section}");
    let mut lines = markdown
        .lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .peekable();
    if lines.peek().is_none() {
        return Err(format!("no section {heading:?}"));
    }
    let rows: Vec<&'a str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    if rows.len() < 3 {
        return Err(format!("no variable table under {heading:?}"));
    }
    // Skip the header and the `|---|` line.
    Ok(rows[2..]
        .iter()
        .map(|row| {
            let cells: Vec<&str> = row.trim().trim_matches('|').split('|').collect();
            let cell = |i: usize| cells.get(i).map_or("", |c| c.trim()).to_owned();
            [cell(0), cell(1), cells.get(2..).unwrap_or(&[]).join("|")]
        })
        .collect())
}

/// A documented variable: its name and every default the docs accept for it
/// (each backticked span of the default cell, plus `unset`/`required` when
/// the cell says so), e.g. `` `$XDG_STATE_HOME/polystream/spool`, or `spool` ``
/// accepts both, since a default may depend on the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    pub var: String,
    pub defaults: Vec<String>,
}

fn accepted_defaults(cell: &str) -> Vec<String> {
    let mut accepted = code_spans(cell);
    let lower = cell.to_ascii_lowercase();
    for word in ["unset", "required"] {
        if lower.starts_with(word) {
            accepted.push(word.to_owned());
        }
    }
    accepted
}

/// The section of docs/configuration.md every service's `OTEL_*` row refers to.
pub const OBSERVABILITY_SECTION: &str = "Observability variables";

/// The variables documented in `section` of docs/configuration.md. A row
/// naming several variables (`` `ADMIN_EMAIL`, `ADMIN_PASSWORD` ``) gives
/// each the row's default; the `` `OTEL_*`, `RUST_LOG` `` row stands for the
/// [`OBSERVABILITY_SECTION`] table, with the `OTEL_SERVICE_NAME` default the
/// row names (`` `OTEL_SERVICE_NAME` defaults to `polystream-s1-gateway` ``).
pub fn documented(markdown: &str, section: &str) -> Result<Vec<Documented>, String> {
    let mut out = Vec::new();
    for [vars, default, meaning] in table_rows(markdown, section)? {
        let names = code_spans(&vars);
        if names.iter().any(|n| n.ends_with('*')) {
            let service = meaning
                .split_once("`OTEL_SERVICE_NAME` defaults to")
                .and_then(|(_, rest)| code_spans(rest).into_iter().next())
                .ok_or_else(|| {
                    format!("{section}: the {vars} row does not name OTEL_SERVICE_NAME's default")
                })?;
            for row in documented(markdown, OBSERVABILITY_SECTION)? {
                let defaults = if row.var == "OTEL_SERVICE_NAME" {
                    vec![service.clone()]
                } else {
                    row.defaults
                };
                out.push(Documented {
                    var: row.var,
                    defaults,
                });
            }
            continue;
        }
        if names.is_empty() {
            return Err(format!("{section}: a row names no variable: {vars:?}"));
        }
        for var in names {
            out.push(Documented {
                var,
                defaults: accepted_defaults(&default),
            });
        }
    }
    Ok(out)
}

/// Defaults agree when equal as text or as numbers (`1` and `1.0`).
fn same_default(code: &str, doc: &str) -> bool {
    code == doc || matches!((code.parse::<f64>(), doc.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// Every disagreement between what a binary lists (`listed`: variable,
/// default as [`render`] writes it) and what the docs say, each naming the
/// variable; empty when they agree.
pub fn mismatches(listed: &[(String, String)], docs: &[Documented]) -> Vec<String> {
    let mut problems = Vec::new();
    for (var, default) in listed {
        match docs.iter().find(|d| &d.var == var) {
            None => problems.push(format!(
                "{var} (default {default}) is read by the code but missing from the docs table"
            )),
            Some(d) if !d.defaults.iter().any(|doc| same_default(default, doc)) => {
                problems.push(format!(
                    "{var}: the code's default is {default:?}, the docs say {:?}",
                    d.defaults
                ))
            }
            Some(_) => {}
        }
    }
    for d in docs {
        if !listed.iter().any(|(var, _)| var == &d.var) {
            problems.push(format!(
                "{} is documented but the code does not read it",
                d.var
            ));
        }
    }
    problems
}

/// [`mismatches`] between a binary's `--help` text and `section` of
/// docs/configuration.md (`markdown`); an unreadable table is one problem.
pub fn help_vs_docs(help: &str, markdown: &str, section: &str) -> Vec<String> {
    let listed = parse_help(help);
    if listed.is_empty() {
        return vec![format!(
            "--help lists no variables (no {HELP_HEADING:?} section)"
        )];
    }
    match documented(markdown, section) {
        Ok(docs) => mismatches(&listed, &docs),
        Err(e) => vec![e],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "\
# Configuration

## S9 thing

Intro.

| variable | default | meaning |
|---|---|---|
| `PORT` | `8000` | where |
| `A_USER`, `A_PASS` | unset | both or neither |
| `DIR` | `$XDG/dir`, or `dir` when unset | where files go |
| `RATIO` | `1.0` | a | pipe in the meaning |
| `OTEL_*`, `RUST_LOG` | see below | `OTEL_SERVICE_NAME` defaults to `s9` |

After.

## Observability variables

| variable | default | meaning |
|---|---|---|
| `OTEL_SERVICE_NAME` | the service's name | name |
| `RUST_LOG` | `info` | filter |
";

    fn listed(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_section_table_is_read_with_multi_variable_rows_and_the_otel_row_expanded() {
        let docs = documented(DOCS, "S9 thing").unwrap();
        let vars: Vec<&str> = docs.iter().map(|d| d.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "PORT",
                "A_USER",
                "A_PASS",
                "DIR",
                "RATIO",
                "OTEL_SERVICE_NAME",
                "RUST_LOG"
            ]
        );
        assert_eq!(docs[1].defaults, ["unset"]);
        assert_eq!(docs[3].defaults, ["$XDG/dir", "dir"]);
        assert_eq!(docs[5].defaults, ["s9"]);
        assert_eq!(docs[6].defaults, ["info"]);
        assert!(documented(DOCS, "S8 nothing").unwrap_err().contains("S8"));
    }

    #[test]
    fn agreement_allows_environment_dependent_and_numerically_equal_defaults() {
        let docs = documented(DOCS, "S9 thing").unwrap();
        let code = listed(&[
            ("PORT", "8000"),
            ("A_USER", "unset"),
            ("A_PASS", "unset"),
            ("DIR", "dir"),
            ("RATIO", "1"),
            ("OTEL_SERVICE_NAME", "s9"),
            ("RUST_LOG", "info"),
        ]);
        assert_eq!(mismatches(&code, &docs), Vec::<String>::new());
    }

    #[test]
    fn every_disagreement_names_its_variable() {
        let docs = documented(DOCS, "S9 thing").unwrap();
        let code = listed(&[
            ("PORT", "8001"),
            ("A_USER", "unset"),
            ("A_PASS", "unset"),
            ("DIR", "dir"),
            ("OTEL_SERVICE_NAME", "s9"),
            ("RUST_LOG", "info"),
            ("NEW_KNOB", "3"),
        ]);
        let problems = mismatches(&code, &docs);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("PORT: the code's default is \"8001\""));
        assert!(problems[1].starts_with("NEW_KNOB (default 3) is read by the code but missing"));
        assert!(problems[2].starts_with("RATIO is documented but the code does not read it"));
    }

    #[test]
    fn help_lists_what_the_reader_was_asked_for_plus_telemetry_and_parses_back() {
        let settings = settings("polystream-s9", |r| {
            let _: u16 = r.parse("PORT", 8000);
            r.string("TOKEN", "");
            r.required("SECRET");
        });
        let help = render(&settings);
        let parsed = parse_help(&format!("Usage: x\n\n{help}\nmore text\n"));
        assert_eq!(
            &parsed[..3],
            listed(&[("PORT", "8000"), ("TOKEN", "unset"), ("SECRET", "required")])
        );
        let get = |var: &str| {
            parsed
                .iter()
                .find(|(v, _)| v == var)
                .map(|(_, d)| d.as_str())
        };
        assert_eq!(get("OTEL_SERVICE_NAME"), Some("polystream-s9"));
        assert_eq!(get("OTEL_EXPORTER_OTLP_ENDPOINT"), Some("unset"));
        assert_eq!(
            get("OTEL_TRACES_SAMPLER_ARG"),
            Some("1"),
            "read only for a ratio sampler"
        );
        assert_eq!(get("RUST_LOG"), Some("info"));
        assert_eq!(parsed.len(), settings.len());
    }

    #[test]
    fn the_command_answers_version_and_help() {
        let cmd = command("polystream-s9", "A test binary.", &[]);
        let err = cmd
            .clone()
            .try_get_matches_from(["polystream-s9", "--version"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(err.to_string().starts_with("polystream-s9 "));
        let err = cmd
            .try_get_matches_from(["polystream-s9", "--help"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(err.to_string().contains(HELP_HEADING));
    }
}
