//! Generated artifacts (event schemas, the OpenAPI document, the CRD) are
//! committed and checked for drift, so their text must be stable.

/// Pretty JSON with sorted keys and a trailing newline. Sorting keeps the
/// output independent of whether some crate in the build turned on
/// serde_json's `preserve_order`.
pub fn canonical_json(mut value: serde_json::Value) -> String {
    sort_keys(&mut value);
    // A JSON value always serializes.
    let mut s = serde_json::to_string_pretty(&value).unwrap_or_default();
    s.push('\n');
    s
}

/// Sorts object keys at every depth, in place.
pub fn sort_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": [{"d": 1, "c": 2}]});
        assert_eq!(
            super::canonical_json(v),
            "{\n  \"a\": [\n    {\n      \"c\": 2,\n      \"d\": 1\n    }\n  ],\n  \"b\": 1\n}\n"
        );
    }
}
