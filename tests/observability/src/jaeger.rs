//! The chain the platform promises of one request's trace (read from
//! Jaeger with `polystream_smoke_tests::jaeger`):
//! S1 server → S1 producer → S2 consumer → (S2 store calls, S2 producer) →
//! S3 consumers, every span carrying the request's correlation id.

use std::collections::HashMap;

pub use polystream_smoke_tests::jaeger::{
    CONVERSATION_KEY, CORRELATION_KEY, Span, render_tree, spans_of,
};

/// The service names of the three services in the trace.
#[derive(Debug, Clone, Copy)]
pub struct Services<'a> {
    pub s1: &'a str,
    pub s2: &'a str,
    pub s3: &'a str,
}

/// The spans of the promised chain, by role.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub s1_server: String,
    pub s1_producer: String,
    pub s2_consumer: String,
    pub s2_stores: Vec<String>,
    pub s2_producer: String,
    pub s3_command_consumer: String,
    pub s3_outcome_consumer: String,
}

struct Tree<'a> {
    by_id: HashMap<&'a str, &'a Span>,
}

impl<'a> Tree<'a> {
    fn new(spans: &'a [Span]) -> Self {
        Self {
            by_id: spans.iter().map(|s| (s.id.as_str(), s)).collect(),
        }
    }

    /// True when `ancestor` is `span`'s parent, grandparent, ...
    fn descends(&self, span: &Span, ancestor: &str) -> bool {
        let mut at = span.parent.as_deref();
        let mut hops = 0;
        while let Some(p) = at {
            if p == ancestor {
                return true;
            }
            hops += 1;
            if hops > 1000 {
                return false; // a cycle: malformed trace
            }
            at = self.by_id.get(p).and_then(|s| s.parent.as_deref());
        }
        false
    }
}

/// Checks the chain of one request's trace; the error lists every missing
/// link and every span without the correlation id, naming them.
pub fn check_chain(spans: &[Span], svc: Services<'_>, corr: &str) -> Result<Chain, Vec<String>> {
    let tree = Tree::new(spans);
    let mut problems = Vec::new();
    let of = |service: &str, kind: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| s.service == service && s.kind == kind)
            .collect()
    };
    let server = of(svc.s1, "server")
        .into_iter()
        .find(|s| s.tags.get(CORRELATION_KEY).map(String::as_str) == Some(corr))
        .or_else(|| of(svc.s1, "server").into_iter().next());
    let Some(server) = server else {
        problems.push(format!(
            "no {} server span (span.kind=server) in the trace",
            svc.s1
        ));
        return Err(problems);
    };
    let child_of = |service: &str, kind: &str, ancestor: &Span| -> Option<&Span> {
        let cands: Vec<&Span> = of(service, kind)
            .into_iter()
            .filter(|s| tree.descends(s, &ancestor.id))
            .collect();
        // A direct child is the expected shape; any descendant is accepted.
        cands
            .iter()
            .find(|s| s.parent.as_deref() == Some(ancestor.id.as_str()))
            .or(cands.first())
            .copied()
    };
    let s1_producer = child_of(svc.s1, "producer", server);
    let s2_consumer = s1_producer.and_then(|p| child_of(svc.s2, "consumer", p));
    let s2_producer = s2_consumer.and_then(|c| child_of(svc.s2, "producer", c));
    let s2_stores: Vec<&Span> = s2_consumer
        .map(|c| {
            spans
                .iter()
                .filter(|s| s.service == svc.s2 && s.is_store_call() && tree.descends(s, &c.id))
                .collect()
        })
        .unwrap_or_default();
    let s3_command = s1_producer.and_then(|p| child_of(svc.s3, "consumer", p));
    let s3_outcome = s2_producer.and_then(|p| child_of(svc.s3, "consumer", p));

    if s1_producer.is_none() {
        problems.push(format!(
            "no {} producer span (span.kind=producer) below the server span {}",
            svc.s1,
            server.describe()
        ));
    }
    if let Some(p) = s1_producer
        && s2_consumer.is_none()
    {
        problems.push(format!(
            "no {} consumer span (span.kind=consumer) continuing S1's producer span {} \
             (the traceparent header was not picked up, or S2 starts a new trace)",
            svc.s2,
            p.describe()
        ));
    }
    if let Some(c) = s2_consumer {
        if s2_stores.is_empty() {
            problems.push(format!(
                "no store span (db.system.name / db.system attribute) of {} below its consumer span {}",
                svc.s2,
                c.describe()
            ));
        }
        if s2_producer.is_none() {
            problems.push(format!(
                "no {} producer span (the outcome on response_events) below its consumer span {}",
                svc.s2,
                c.describe()
            ));
        }
    }
    if let Some(p) = s1_producer
        && s3_command.is_none()
    {
        problems.push(format!(
            "no {} consumer span for the command, continuing S1's producer span {}",
            svc.s3,
            p.describe()
        ));
    }
    if let Some(p) = s2_producer
        && s3_outcome.is_none()
    {
        problems.push(format!(
            "no {} consumer span for the outcome, continuing S2's producer span {}",
            svc.s3,
            p.describe()
        ));
    }

    // The correlation id on every span of the chain; messaging spans also
    // carry it as the conversation id.
    let mut chain: Vec<(&Span, bool)> = vec![(server, false)];
    for m in [
        s1_producer,
        s2_consumer,
        s2_producer,
        s3_command,
        s3_outcome,
    ]
    .into_iter()
    .flatten()
    {
        chain.push((m, true));
    }
    chain.extend(s2_stores.iter().map(|s| (*s, false)));
    for (s, messaging) in chain {
        if s.tags.get(CORRELATION_KEY).map(String::as_str) != Some(corr) {
            problems.push(format!(
                "{} has no {CORRELATION_KEY}={corr} attribute (has {:?})",
                s.describe(),
                s.tags.get(CORRELATION_KEY)
            ));
        }
        if messaging && s.tags.get(CONVERSATION_KEY).map(String::as_str) != Some(corr) {
            problems.push(format!(
                "{} has no {CONVERSATION_KEY}={corr} attribute (has {:?})",
                s.describe(),
                s.tags.get(CONVERSATION_KEY)
            ));
        }
    }

    match (
        s1_producer,
        s2_consumer,
        s2_producer,
        s3_command,
        s3_outcome,
    ) {
        (Some(p1), Some(c2), Some(p2), Some(c3a), Some(c3b)) if problems.is_empty() => Ok(Chain {
            s1_server: server.id.clone(),
            s1_producer: p1.id.clone(),
            s2_consumer: c2.id.clone(),
            s2_stores: s2_stores.iter().map(|s| s.id.clone()).collect(),
            s2_producer: p2.id.clone(),
            s3_command_consumer: c3a.id.clone(),
            s3_outcome_consumer: c3b.id.clone(),
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::{Value, json};

    const SVC: Services<'static> = Services {
        s1: "polystream-s1-gateway",
        s2: "polystream-s2-processor",
        s3: "polystream-s3-monitor",
    };

    /// (id, parent, process, operation, kind, extra tags)
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    fn trace(spans: &[Row], corr: &str) -> Value {
        let spans: Vec<Value> = spans
            .iter()
            .map(|(id, parent, pid, op, kind, extra)| {
                let mut tags = vec![
                    json!({"key": "span.kind", "type": "string", "value": kind}),
                    json!({"key": CORRELATION_KEY, "type": "string", "value": corr}),
                ];
                if *kind == "producer" || *kind == "consumer" {
                    tags.push(json!({"key": CONVERSATION_KEY, "type": "string", "value": corr}));
                }
                for (k, v) in *extra {
                    tags.push(json!({"key": k, "type": "string", "value": v}));
                }
                let refs = if parent.is_empty() {
                    json!([])
                } else {
                    json!([{"refType": "CHILD_OF", "traceID": "t", "spanID": parent}])
                };
                json!({"spanID": id, "operationName": op, "references": refs, "processID": pid, "tags": tags})
            })
            .collect();
        json!({"data": [{"traceID": "t", "spans": spans, "processes": {
            "p1": {"serviceName": SVC.s1}, "p2": {"serviceName": SVC.s2}, "p3": {"serviceName": SVC.s3}
        }}]})
    }

    fn full() -> Vec<Row> {
        vec![
            ("a", "", "p1", "POST /v1/users", "server", &[]),
            (
                "r",
                "a",
                "p1",
                "redis SET",
                "client",
                &[("db.system.name", "redis")],
            ),
            ("b", "a", "p1", "user_events send", "producer", &[]),
            ("c", "b", "p2", "user_events process", "consumer", &[]),
            (
                "d",
                "c",
                "p2",
                "INSERT users",
                "client",
                &[("db.system.name", "postgresql")],
            ),
            ("e", "c", "p2", "response_events send", "producer", &[]),
            ("f", "b", "p3", "user_events process", "consumer", &[]),
            ("g", "e", "p3", "response_events process", "consumer", &[]),
        ]
    }

    #[test]
    fn the_full_chain_is_found() {
        let spans = spans_of(&trace(&full(), "corr-1"));
        assert_eq!(spans.len(), 8);
        let chain = check_chain(&spans, SVC, "corr-1").unwrap();
        assert_eq!(
            chain,
            Chain {
                s1_server: "a".into(),
                s1_producer: "b".into(),
                s2_consumer: "c".into(),
                s2_stores: vec!["d".into()],
                s2_producer: "e".into(),
                s3_command_consumer: "f".into(),
                s3_outcome_consumer: "g".into(),
            }
        );
        let tree = render_tree(&spans);
        assert!(
            tree.contains("  polystream-s1-gateway producer span \"user_events send\" (b)"),
            "{tree}"
        );
    }

    #[test]
    fn a_broken_hop_is_named() {
        // S2 started a new trace: its consumer span has no parent.
        let mut spans = full();
        spans[3].1 = "";
        let err = check_chain(&spans_of(&trace(&spans, "corr-1")), SVC, "corr-1").unwrap_err();
        assert!(
            err[0].starts_with("no polystream-s2-processor consumer span"),
            "{err:?}"
        );
        assert_eq!(err.len(), 1, "{err:?}");
    }

    #[test]
    fn missing_store_spans_and_attributes_are_named() {
        let mut spans = full();
        spans.remove(4);
        let mut answer = trace(&spans, "corr-1");
        // Drop the correlation id from S3's outcome consumer.
        answer["data"][0]["spans"][6]["tags"][1]["value"] = json!("other");
        let err = check_chain(&spans_of(&answer), SVC, "corr-1").unwrap_err();
        let all = err.join("\n");
        assert!(all.contains("no store span"), "{all}");
        assert!(all.contains("consumer span \"response_events process\" (g) has no polystream.correlation_id=corr-1"), "{all}");
    }
}
