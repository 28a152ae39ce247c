//! The invariant the fuzz target checks, as a plain function so it is unit
//! tested too: whatever bytes arrive on `user_events`, a command that decodes
//! and passes `validate` holds no string a store cannot take, and one that
//! holds such a string is refused naming its field.

use polystream_common::events::{Command, decode_envelope};
use serde_json::Value;

/// Fields that explicitly take multi-line text; written out here rather than
/// taken from the contract, so the check does not trust what it checks.
const MULTI_LINE: &[&str] = &["description"];

/// Whether a store should never receive `s` in field `path`.
pub fn unstorable(path: &str, s: &str) -> bool {
    let multi = MULTI_LINE.contains(&path);
    s.chars().any(|c| match c {
        '\n' | '\r' | '\t' => !multi,
        '\u{2028}' | '\u{2029}' => true,
        c => c.is_control(),
    })
}

/// Each string leaf of `v` with its path (`genres[2]`).
pub fn strings(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_owned(), s.clone())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| strings(x, &format!("{path}[{i}]"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            strings(x, &p, out)
        }),
        _ => {}
    }
}

/// Decodes and validates `bytes` as S2 does; panics when the invariant breaks.
pub fn check(bytes: &[u8]) {
    let Ok(env) = decode_envelope(bytes) else {
        return;
    };
    let Ok(cmd) = Command::from_data(&env.event_type, env.data) else {
        return;
    };
    let verdict = cmd.validate();
    let mut leaves = Vec::new();
    strings(&cmd.to_data(), "", &mut leaves);
    for (path, s) in leaves.iter().filter(|(p, s)| unstorable(p, s)) {
        match &verdict {
            Ok(()) => panic!("{}: {path} = {s:?} passed validation", cmd.event_type()),
            Err(v) => assert!(
                v.iter()
                    .any(|v| &v.field == path && v.message.contains("control characters")),
                "{}: {path} = {s:?} refused without naming it: {v:?}",
                cmd.event_type()
            ),
        }
    }
}

/// A valid envelope of every command type: the fuzzer's starting corpus.
pub fn seeds() -> Vec<Vec<u8>> {
    Command::examples()
        .iter()
        .map(|c| {
            let env = polystream_common::events::Envelope::new(
                "/polystream/fuzz",
                c.event_type(),
                Some(c.subject()),
                uuid::Uuid::nil(),
                c.to_data(),
            );
            serde_json::to_vec(&env).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_and_a_nul_is_caught() {
        for s in seeds() {
            check(&s);
        }
        let text = String::from_utf8(seeds()[0].clone()).unwrap();
        let poisoned = text.replace("Ana Souza", "Ana\\u0000Souza");
        assert_ne!(text, poisoned);
        check(poisoned.as_bytes()); // refused naming `name`: no panic
        assert!(unstorable("name", "a\nb") && !unstorable("description", "a\nb"));
    }
}
