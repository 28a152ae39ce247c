//! Grafana dashboards as the chart ships them, read the way Grafana reads
//! them: panels, their queries, and the template variables substituted. The
//! console draws its charts from these queries, so it and the dashboards
//! never disagree (pure; no I/O).

use serde_json::Value;

/// One query of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub ref_id: String,
    pub expr: String,
    /// Grafana's `legendFormat`, e.g. `{{job}}`.
    pub legend: String,
    pub exemplar: bool,
}

/// One panel that draws data (rows are layout, not panels with data).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub id: Option<i64>,
    pub title: String,
    pub queries: Vec<Query>,
}

/// The parts of a dashboard the console and the tests use.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub file: String,
    pub uid: String,
    pub title: String,
    pub panels: Vec<Panel>,
}

impl Dashboard {
    /// Reads a dashboard file; the error names the file.
    pub fn parse(file: &str, text: &str) -> Result<(Self, Value), String> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("{file}: not valid JSON: {e}"))?;
        let panels = data_panels(&json)
            .into_iter()
            .map(|p| Panel {
                id: p["id"].as_i64(),
                title: p["title"].as_str().unwrap_or_default().to_owned(),
                queries: p["targets"]
                    .as_array()
                    .map(|ts| {
                        ts.iter()
                            .map(|t| Query {
                                ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                                legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
                                exemplar: t["exemplar"].as_bool().unwrap_or(false),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Ok((
            Self {
                file: file.to_owned(),
                uid: json["uid"].as_str().unwrap_or_default().to_owned(),
                title: json["title"].as_str().unwrap_or_default().to_owned(),
                panels,
            },
            json,
        ))
    }
}

/// Every panel of a dashboard except rows, including those inside collapsed
/// rows (Grafana nests them there).
pub fn data_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// Grafana variable names used in `text`: `$name`, `${name}`, `${name:fmt}`, `[[name]]`.
pub fn variables_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices('$') {
        let rest = &text[i + 1..];
        let name = match rest.strip_prefix('{') {
            Some(inner) => ident(inner),
            None => ident(rest),
        };
        if !name.is_empty() {
            out.push(name);
        }
    }
    for (i, _) in text.match_indices("[[") {
        let name = ident(&text[i + 2..]);
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// `expr` with Grafana's variables replaced by `values` (name without `$`),
/// as Grafana would send it to Prometheus; an error names any variable
/// without a value, so the proof never runs a half-substituted query.
pub fn substitute(expr: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = expr.to_owned();
    // Longest names first, so `$namespace_x` is not eaten by `$namespace`.
    let mut values = values.to_vec();
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in values {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${name}"), value);
    }
    match variables_in(&out).first() {
        Some(v) => Err(format!("no value for variable ${v} in {expr}")),
        None => Ok(out),
    }
}
