//! Removing sensitive fields before anything reaches the audit index.
//!
//! A deny-list of field names, matched case-insensitively with `-` read as `_`,
//! at any depth (objects inside objects and arrays). Matching fields are
//! removed entirely; their JSON paths are returned so the audit record still
//! shows that something was there.

use serde_json::Value;

/// Field names never indexed, whatever their value.
pub const DENY_LIST: &[&str] = &[
    "password",
    "password_hash",
    "senha",
    "token",
    "access_token",
    "refresh_token",
    "session_token",
    "api_key",
    "secret",
    "authorization",
    "cpf",
];

fn denied(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    DENY_LIST.contains(&k.as_str())
}

/// Removes every denied field from `value` and returns the removed paths
/// (`data.password_hash`, `items[2].token`), rooted at `root`, sorted (key
/// order depends on serde_json's features, the answer should not).
pub fn redact(value: &mut Value, root: &str) -> Vec<String> {
    let mut removed = Vec::new();
    walk(value, root, &mut removed);
    removed.sort();
    removed
}

fn walk(value: &mut Value, path: &str, removed: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| {
                let keep = !denied(k);
                if !keep {
                    removed.push(join(path, k));
                }
                keep
            });
            for (k, v) in map.iter_mut() {
                walk(v, &join(path, k), removed);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, &format!("{path}[{i}]"), removed);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Best-effort redaction of a body that is not JSON (a truncated or garbled
/// event in the dead-letter topic): the value after a denied name in
/// `"name": value` or `name=value` form is replaced by `[redacted]`. Returns
/// the text and the names found.
pub fn redact_text(text: &str) -> (String, Vec<String>) {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    // (start, end) byte ranges of values to blank, and the names found.
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some((name, after)) = denied_name_at(&lower, i) else {
            i += 1;
            continue;
        };
        let mut j = after;
        if bytes.get(j) == Some(&b'"') {
            j += 1;
        }
        while bytes.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
            j += 1;
        }
        let Some(&sep) = bytes.get(j) else { break };
        if sep != b':' && sep != b'=' {
            i = after;
            continue;
        }
        j += 1;
        while bytes.get(j).is_some_and(|b| *b == b' ' || *b == b'\t') {
            j += 1;
        }
        let start = j;
        let end = if bytes.get(j) == Some(&b'"') {
            let mut k = j + 1;
            while k < bytes.len() && bytes[k] != b'"' {
                k += if bytes[k] == b'\\' { 2 } else { 1 };
            }
            (k + 1).min(bytes.len())
        } else {
            let mut k = j;
            while k < bytes.len() && !matches!(bytes[k], b',' | b'}' | b']' | b'&' | b'\n' | b' ') {
                k += 1;
            }
            k
        };
        if end > start {
            cuts.push((start, end));
            found.push(name.to_owned());
        }
        i = end.max(i + 1);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in cuts {
        // Ranges start and end on ASCII bytes, hence on char boundaries.
        out.push_str(&text[last..start]);
        out.push_str("[redacted]");
        last = end;
    }
    out.push_str(&text[last..]);
    found.sort();
    found.dedup();
    (out, found)
}

/// A denied name starting at byte `i` of `lower` (not in the middle of a
/// longer word), and the byte after it.
fn denied_name_at(lower: &str, i: usize) -> Option<(&'static str, usize)> {
    let bytes = lower.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if i > 0 && word(bytes[i - 1]) {
        return None;
    }
    DENY_LIST
        .iter()
        .filter(|name| {
            lower.is_char_boundary(i)
                && lower[i..].starts_with(*name)
                && !bytes.get(i + name.len()).is_some_and(|b| word(*b))
        })
        .max_by_key(|name| name.len())
        .map(|name| (*name, i + name.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_denied_fields_at_any_depth() {
        let mut v = json!({
            "user_id": 7,
            "password_hash": "$argon2id$v=19$...",
            "CPF": "52998224725",
            "profile": {"name": "Ana", "Password": "hunter2", "tags": ["token"]},
            "sessions": [{"token": "abc", "device": "tv"}, {"refresh-token": "r"}],
        });
        let removed = redact(&mut v, "data");
        assert!(removed.is_sorted());
        assert_eq!(
            v,
            json!({
                "user_id": 7,
                "profile": {"name": "Ana", "tags": ["token"]},
                "sessions": [{"device": "tv"}, {}],
            })
        );
        assert_eq!(
            removed,
            [
                "data.CPF",
                "data.password_hash",
                "data.profile.Password",
                "data.sessions[0].token",
                "data.sessions[1].refresh-token",
            ]
        );
        let text = v.to_string();
        assert!(
            !text.contains("argon2") && !text.contains("52998224725") && !text.contains("hunter2")
        );
    }

    #[test]
    fn leaves_clean_values_alone() {
        let original = json!({"title_id": 3, "stars": 5, "note": "password is not a field here"});
        let mut v = original.clone();
        assert!(redact(&mut v, "").is_empty());
        assert_eq!(v, original);
        let mut scalar = json!("token");
        assert!(redact(&mut scalar, "").is_empty());
    }

    #[test]
    fn text_that_is_not_json_is_redacted_by_name() {
        let (out, found) = redact_text(
            r#"{"user_id": 7, "password_hash": "$argon2id$v=19$x\"y", "cpf":52998224725, "name": "An"#,
        );
        assert_eq!(
            out,
            r#"{"user_id": 7, "password_hash": [redacted], "cpf":[redacted], "name": "An"#
        );
        assert_eq!(found, ["cpf", "password_hash"]);
        let (out, found) = redact_text("user=7&password=hunter2&token=abc def");
        assert_eq!(out, "user=7&password=[redacted]&token=[redacted] def");
        assert_eq!(found, ["password", "token"]);
        // Names inside longer words, or not followed by a value, are left alone.
        let plain = "passwords: tokenizer=on; my_token_count: 3; token";
        assert_eq!(redact_text(plain).0, plain);
        let (out, _) = redact_text("ação token: \"x\"");
        assert_eq!(out, "ação token: [redacted]");
    }

    #[test]
    fn root_level_paths_have_no_leading_dot() {
        let mut v = json!({"token": "t"});
        assert_eq!(redact(&mut v, ""), ["token"]);
    }
}
