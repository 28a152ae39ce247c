use super::*;
use serde_json::{Value, json};

fn registered() -> Command {
    Command::UserRegistered(UserRegistered {
        user_id: 42,
        name: "Ana".into(),
        email: "ana@example.com".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        cpf: Some("52998224725".into()),
        admin: false,
    })
}

#[test]
fn committed_schemas_match_the_types() {
    // Read at run time: checkouts share the target dir, so a path baked in at
    // compile time may name another checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let dir = std::path::Path::new(&manifest_dir).join("../../docs/events");
    let mut stale = Vec::new();
    let files = schema_files();
    for (name, body) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(committed) if &committed == body => {}
            _ => stale.push(name.clone()),
        }
    }
    let committed = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".schema.json"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        stale.is_empty() && committed == files.len(),
        "docs/events is out of date ({stale:?}, {committed} files for {} types); \
         regenerate with `cargo run -p polystream-common --bin gen-event-schemas` and commit",
        files.len()
    );
}

#[test]
fn envelope_round_trips_as_structured_cloudevent() {
    let cmd = registered();
    let corr = Uuid::now_v7();
    let env = Envelope::new(
        "/polystream/s1-gateway",
        cmd.event_type(),
        Some(cmd.subject()),
        corr,
        cmd.to_data(),
    );
    let bytes = serde_json::to_vec(&env).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(raw["specversion"], "1.0");
    assert_eq!(raw["type"], "polystream.user.registered.v1");
    assert_eq!(raw["subject"], "user/42");
    assert_eq!(raw["correlationid"], corr.to_string());
    let back = decode_envelope(&bytes).unwrap();
    assert_eq!(
        Command::from_data(&back.event_type, back.data).unwrap(),
        cmd
    );
}

#[test]
fn decoding_rejects_what_a_consumer_cannot_trust() {
    assert!(matches!(
        decode_envelope(b"not json"),
        Err(DecodeError::Envelope(_))
    ));
    let mut env =
        serde_json::to_value(Envelope::new("/t", "x", None, Uuid::nil(), json!({}))).unwrap();
    env["specversion"] = json!("0.3");
    assert_eq!(
        decode_envelope(env.to_string().as_bytes()),
        Err(DecodeError::SpecVersion("0.3".into()))
    );
    assert_eq!(
        Command::from_data("polystream.nope.v1", json!({})),
        Err(DecodeError::UnknownType("polystream.nope.v1".into()))
    );
    let err = Command::from_data(
        "polystream.title.rated.v1",
        json!({"user_id": 1, "title_id": 2, "stars": 3, "extra": 1}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
}

#[test]
fn validation_names_each_bad_field() {
    let bad = Command::TitleRated(TitleRated {
        user_id: 0,
        title_id: 5,
        stars: 6,
    });
    let fields: Vec<_> = bad
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["user_id", "stars"]);
    assert_eq!(registered().validate(), Ok(()));
    let Command::UserRegistered(mut u) = registered() else {
        unreachable!()
    };
    u.password_hash = Some("hunter2".into());
    u.cpf = Some("12345678900".into());
    let fields: Vec<_> = Command::UserRegistered(u)
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["password_hash", "cpf"]);
}

#[test]
fn an_account_without_a_password_carries_no_hash() {
    let Command::UserRegistered(mut u) = registered() else {
        unreachable!()
    };
    u.password_hash = None;
    let json = serde_json::to_value(&u).unwrap();
    assert!(json.get("password_hash").is_none(), "{json}");
    let back: UserRegistered = serde_json::from_value(json).unwrap();
    assert_eq!(back.password_hash, None);
    assert_eq!(Command::UserRegistered(back).validate(), Ok(()));
}

#[test]
fn cpf_and_email_rules() {
    assert!(is_cpf("52998224725"));
    assert!(!is_cpf("11111111111"));
    assert!(!is_cpf("5299822472"));
    assert!(!is_cpf("529.982.247-25"));
    assert!(is_email("a.b@example.com.br"));
    assert!(!is_email("a@b"));
    assert!(!is_email("a b@example.com"));
}

#[test]
fn every_type_is_versioned_and_unique() {
    let mut all: Vec<_> = Command::TYPES.iter().chain(Outcome::TYPES).collect();
    assert!(
        all.iter()
            .all(|t| t.starts_with("polystream.") && t.ends_with(".v1"))
    );
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

#[test]
fn event_types_are_bounded_for_labels() {
    for t in ["polystream.title.rated.v1", "polystream.command.failed.v1"] {
        assert_eq!(bounded_event_type(Some(t)), t);
    }
    assert_eq!(bounded_event_type(Some("made.up.v9")), "unknown");
    assert_eq!(bounded_event_type(None), "unknown");
}

#[test]
fn a_nul_in_a_name_is_refused_naming_the_field() {
    let Command::UserRegistered(mut u) = registered() else {
        unreachable!()
    };
    u.name = "Bad\u{0}Name".into();
    let v = Command::UserRegistered(u).validate().unwrap_err();
    assert_eq!(
        v,
        [Violation {
            field: "name".into(),
            message: "must not contain control characters (found U+0000)".into(),
        }]
    );
}

#[test]
fn only_multi_line_fields_take_newlines() {
    let Some(Command::TitleUpserted(t)) = Command::examples()
        .into_iter()
        .find(|c| matches!(c, Command::TitleUpserted(_)))
    else {
        unreachable!()
    };
    let fields = |t: TitleUpserted| -> Vec<String> {
        Command::TitleUpserted(t)
            .validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.field)
            .collect()
    };
    let mut ok = t.clone();
    ok.description = "line one\r\nline\ttwo\n".into();
    assert_eq!(fields(ok), Vec::<String>::new());
    let mut bad = t.clone();
    bad.description = "bell\u{7}".into();
    bad.title = "two\nlines".into();
    bad.genres[1] = "tab\tbed".into();
    bad.cast.push("C1\u{85}control".into());
    assert_eq!(
        fields(bad),
        ["title", "description", "cast[2]", "genres[1]"]
    );
}

#[test]
fn examples_cover_every_command_and_are_valid() {
    let examples = Command::examples();
    let types: Vec<_> = examples.iter().map(Command::event_type).collect();
    assert_eq!(types, Command::TYPES, "one example per type, in order");
    for c in &examples {
        assert_eq!(c.validate(), Ok(()), "{}", c.event_type());
    }
}

/// Each string leaf of `v`: (JSON path as validation names it, JSON pointer).
fn string_leaves(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(_) => out.push((path.to_owned(), pointer.to_owned())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(
                    item,
                    &format!("{path}[{i}]"),
                    &format!("{pointer}/{i}"),
                    out,
                );
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(item, &p, &format!("{pointer}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Every property path a JSON Schema allows, arrays as `[]`: `seasons[].number`.
fn schema_paths(root: &Value, s: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return schema_paths(root, &root["$defs"][name], path, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for sub in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            schema_paths(root, sub, path, out);
        }
    }
    if let Some(items) = s.get("items") {
        schema_paths(root, items, &format!("{path}[]"), out);
    }
    for (k, sub) in s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        out.push(p.clone());
        schema_paths(root, sub, &p, out);
    }
}

/// Adding a string field without a character rule fails here: the examples
/// must fill every property the schemas declare, and a control character put
/// in any string of any example is refused, by the typed decoder (ids,
/// dates, enums) or by `validate` naming that exact path.
#[test]
fn every_string_field_of_every_command_refuses_control_characters() {
    let schemas: std::collections::HashMap<_, _> = Command::schemas().into_iter().collect();
    for cmd in Command::examples() {
        let t = cmd.event_type();
        let data = cmd.to_data();
        let schema = serde_json::to_value(&schemas[t]).unwrap();
        let mut declared = Vec::new();
        schema_paths(&schema, &schema, "", &mut declared);
        let mut present = Vec::new();
        fn all_paths(v: &Value, path: &str, out: &mut Vec<String>) {
            match v {
                Value::Array(items) => items
                    .iter()
                    .for_each(|i| all_paths(i, &format!("{path}[]"), out)),
                Value::Object(m) => m.iter().for_each(|(k, i)| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(p.clone());
                    all_paths(i, &p, out);
                }),
                _ => {}
            }
        }
        all_paths(&data, "", &mut present);
        for p in &declared {
            assert!(
                present.contains(p),
                "{t}: the example leaves `{p}` out; give it a value in Command::examples()"
            );
        }

        let mut leaves = Vec::new();
        string_leaves(&data, "", "", &mut leaves);
        let mut free_text = Vec::new();
        for (path, pointer) in &leaves {
            let mut bad = data.clone();
            *bad.pointer_mut(pointer).unwrap() = json!("x\u{0}y");
            let Ok(decoded) = Command::from_data(t, bad) else {
                continue; // a typed field: the decoder refuses it
            };
            free_text.push(path.clone());
            let v = decoded.validate().unwrap_err();
            assert!(
                v.iter().any(|v| &v.field == path
                    && v.message == "must not contain control characters (found U+0000)"),
                "{t}: a NUL in `{path}` must be refused naming it; got {v:?}"
            );
        }
        let mut listed: Vec<_> = cmd.text_fields().into_iter().map(|(f, _, _)| f).collect();
        listed.sort();
        free_text.sort();
        assert_eq!(
            listed, free_text,
            "{t}: text_fields() lists exactly the free-text fields"
        );
    }
}

#[test]
fn lists_and_free_text_are_bounded() {
    let Some(Command::TitleUpserted(mut t)) = Command::examples()
        .into_iter()
        .find(|c| matches!(c, Command::TitleUpserted(_)))
    else {
        unreachable!()
    };
    t.genres = vec!["g".into(); 101];
    t.cast[0] = "c".repeat(201);
    t.directors[0] = " ".into();
    let fields: Vec<_> = Command::TitleUpserted(t)
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["directors[0]", "cast[0]", "genres"]);
}
