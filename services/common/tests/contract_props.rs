//! Property: whatever a client puts in any string of any command, the contract
//! either refuses it naming that field, or the value is one every store takes
//! (no NUL, no control character; newlines and tabs only in multi-line text).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use polystream_common::events::Command;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Fields that explicitly take multi-line text. Written out here, not taken
/// from the contract, so the property does not trust what it checks.
const MULTI_LINE: &[&str] = &["description"];

/// What no store should receive in `path`.
fn unstorable(path: &str, s: &str) -> bool {
    let multi = MULTI_LINE.contains(&path);
    s.chars().any(|c| match c {
        '\n' | '\r' | '\t' => !multi,
        '\u{2028}' | '\u{2029}' => true,
        c => c.is_control(),
    })
}

/// Each string leaf of `v`: (JSON path, JSON pointer).
fn leaves(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(_) => out.push((path.to_owned(), pointer.to_owned())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, &format!("{path}[{i}]"), &format!("{pointer}/{i}"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            leaves(x, &p, &format!("{pointer}/{k}"), out)
        }),
        _ => {}
    }
}

/// Every (command type, example data, path, pointer) with a string in it.
fn targets() -> Vec<(&'static str, Value, String, String)> {
    let mut out = Vec::new();
    for c in Command::examples() {
        let data = c.to_data();
        let mut l = Vec::new();
        leaves(&data, "", "", &mut l);
        for (path, pointer) in l {
            out.push((c.event_type(), data.clone(), path, pointer));
        }
    }
    out
}

/// Strings a client might send: anything printable, anything at all, text
/// with control characters spliced in, and huge runs.
fn hostile() -> impl Strategy<Value = String> {
    let control = prop::sample::select(vec![
        '\0', '\u{1}', '\u{7}', '\t', '\n', '\r', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}',
        '\u{2028}', '\u{2029}',
    ]);
    prop_oneof![
        3 => "\\PC{0,40}",
        3 => any::<String>(),
        3 => ("\\PC{0,20}", control, "\\PC{0,20}").prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        1 => (any::<char>(), 0usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => prop::sample::select(vec![
            String::new(), " ".into(), "ana@example.com".into(), "pt-BR".into(), "BRL".into(),
            "52998224725".into(), "image/png".into(), "Bad\u{0}Name".into(),
        ]),
    ]
}

fn check(t: &str, data: &Value, path: &str, pointer: &str, s: &str) -> Result<(), TestCaseError> {
    let mut data = data.clone();
    *data.pointer_mut(pointer).unwrap() = Value::String(s.to_owned());
    // A typed field (id, date, enum) refuses what is not one: rejected.
    let Ok(cmd) = Command::from_data(t, data) else {
        return Ok(());
    };
    let bad = unstorable(path, s);
    match cmd.validate() {
        Ok(()) => prop_assert!(!bad, "{t}: {path} = {s:?} was accepted"),
        Err(v) if bad => prop_assert!(
            v.iter()
                .any(|v| v.field == path && v.message.contains("control characters")),
            "{t}: {path} = {s:?} refused without naming it: {v:?}"
        ),
        Err(_) => {}
    }
    Ok(())
}

#[test]
fn every_string_field_refuses_what_a_store_cannot_take() {
    let targets = targets();
    assert!(
        targets.len() > 20,
        "examples should fill every string field"
    );
    // Modest: each case is microseconds; this runs in a second or two.
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..targets.len(), hostile());
    runner
        .run(&strategy, |(i, s)| {
            let (t, data, path, pointer) = &targets[i];
            check(t, data, path, pointer, &s)
        })
        .unwrap();
}

#[test]
fn every_field_is_tried_with_every_control_character() {
    // Exhaustive over the small set that matters most, so no field relies on
    // the random draw.
    let controls = (0u32..0x20)
        .chain(0x7F..0xA0)
        .chain([0x2028, 0x2029])
        .filter_map(char::from_u32);
    let controls: Vec<char> = controls.collect();
    for (t, data, path, pointer) in targets() {
        for c in &controls {
            check(t, &data, &path, &pointer, &format!("ok{c}ok")).unwrap();
        }
    }
}
