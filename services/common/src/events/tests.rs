use super::*;
use serde_json::json;

fn registered() -> Command {
    Command::UserRegistered(UserRegistered {
        user_id: 42,
        name: "Ana".into(),
        email: "ana@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
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
    u.password_hash = "hunter2".into();
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
