//! OpenSearch access: the index template, bulk indexing with per-item error
//! classification, and searches. The client can be re-pointed at run time
//! ([`Indexer::set_url`]), which tests use to simulate an outage ending.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opensearch::cluster::ClusterHealthParts;
use opensearch::http::Url;
use opensearch::http::request::JsonBody;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::indices::{IndicesExistsIndexTemplateParts, IndicesPutIndexTemplateParts};
use opensearch::{BulkParts, OpenSearch, SearchParts};
use serde_json::{Value, json};

use crate::audit::{IndexedDoc, index_pattern, index_template};
use crate::spool::Rejected;

/// What a bulk request did with each document.
#[derive(Debug, Default)]
pub struct BulkOutcome {
    /// Refused for good (e.g. a mapping conflict): retrying cannot help.
    pub rejected: Vec<Rejected>,
    /// Refused for now (overload, shard unavailable): to be retried.
    pub retry: Vec<IndexedDoc>,
}

/// Why a bulk request as a whole was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// OpenSearch is away or overloaded: keep the documents and retry later.
    #[error("{0}")]
    Unavailable(String),
    /// OpenSearch refused the request for its content (e.g. 400 with an id
    /// too long, 413 too large): retrying the same request cannot help.
    #[error("{0}")]
    Refused(String),
}

/// How a non-2xx answer to a whole bulk request is treated. Only statuses
/// that blame the request's content are refusals; auth and routing errors
/// (401, 403, 404…) are a deployment fault that must not cost the documents,
/// so they, 408, 429 and 5xx are retried like an outage.
pub fn bulk_status_is_refusal(status: u16) -> bool {
    matches!(status, 400 | 413 | 414 | 422)
}

/// What isolating refusals in a batch came to (see [`bulk_isolating`]).
#[derive(Debug, Default)]
pub struct Isolated {
    pub outcome: BulkOutcome,
    /// Set when OpenSearch became unavailable on the way; every document not
    /// yet taken is then in `outcome.retry`.
    pub unavailable: Option<String>,
    /// Bulk requests made.
    pub requests: usize,
}

/// Sends `docs` through `send` (one bulk request per call); when a request
/// is refused as a whole, bisects it until the refused documents stand
/// alone, so they go to `rejected` and the rest is indexed. A batch with one
/// bad document costs about 2·log2(n) extra requests.
pub async fn bulk_isolating<F, Fut>(docs: &[IndexedDoc], mut send: F) -> Isolated
where
    // Owned parts: a future borrowing its argument would not be `Send` for
    // every lifetime, which the spawned consume and replay tasks need.
    F: FnMut(Vec<IndexedDoc>) -> Fut,
    Fut: Future<Output = Result<BulkOutcome, BulkError>>,
{
    let mut out = Isolated::default();
    // Depth first, front half first: the documents are tried in order.
    let mut todo: Vec<&[IndexedDoc]> = vec![docs];
    while let Some(part) = todo.pop() {
        if part.is_empty() {
            continue;
        }
        if out.unavailable.is_some() {
            out.outcome.retry.extend_from_slice(part);
            continue;
        }
        out.requests += 1;
        match send(part.to_vec()).await {
            Ok(o) => {
                out.outcome.rejected.extend(o.rejected);
                out.outcome.retry.extend(o.retry);
            }
            Err(BulkError::Refused(reason)) => match part {
                [doc] => out.outcome.rejected.push(Rejected {
                    reason,
                    doc: doc.clone(),
                }),
                _ => {
                    let (front, back) = part.split_at(part.len() / 2);
                    todo.push(back);
                    todo.push(front);
                }
            },
            Err(BulkError::Unavailable(e)) => {
                out.outcome.retry.extend_from_slice(part);
                out.unavailable = Some(e);
            }
        }
    }
    out
}

/// Why a search could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("OpenSearch is unreachable: {0}")]
    Unavailable(String),
    #[error("OpenSearch refused the search: {0}")]
    Refused(String),
    #[error("{NOT_CONFIGURED}")]
    NotConfigured,
}

/// Why nothing can be indexed or searched in spool-only mode.
pub const NOT_CONFIGURED: &str = "OpenSearch is not configured (OPENSEARCH_URL is empty)";

pub struct Indexer {
    /// `None` in spool-only mode.
    client: RwLock<Option<(String, Arc<OpenSearch>)>>,
    prefix: String,
    /// Set once the template is installed and OpenSearch answers; cleared on
    /// any availability failure, so nothing is indexed into an index the
    /// template has not shaped.
    available: AtomicBool,
}

fn build_client(url: &str) -> anyhow::Result<OpenSearch> {
    let url = Url::parse(url)?;
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(Duration::from_secs(15))
        .build()?;
    Ok(OpenSearch::new(transport))
}

impl Indexer {
    /// An indexer for `url`, or one that is never available when `None`
    /// (spool-only mode).
    pub fn new(url: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let client = match url {
            Some(u) => Some((u.to_owned(), Arc::new(build_client(u)?))),
            None => None,
        };
        Ok(Self {
            client: RwLock::new(client),
            prefix: prefix.to_owned(),
            available: AtomicBool::new(false),
        })
    }

    /// Points at another OpenSearch; it is considered unavailable until the
    /// health loop has installed the template there.
    pub fn set_url(&self, url: &str) -> anyhow::Result<()> {
        let client = Arc::new(build_client(url)?);
        if let Ok(mut guard) = self.client.write() {
            *guard = Some((url.to_owned(), client));
        }
        self.mark_unavailable();
        Ok(())
    }

    /// The OpenSearch URL; empty in spool-only mode.
    pub fn url(&self) -> String {
        self.client
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|c| c.0.clone()))
            .unwrap_or_default()
    }

    /// False in spool-only mode.
    pub fn is_configured(&self) -> bool {
        self.client.read().is_ok_and(|g| g.is_some())
    }

    fn client(&self) -> Result<Arc<OpenSearch>, String> {
        match self.client.read() {
            Ok(g) => g
                .as_ref()
                .map(|c| c.1.clone())
                .ok_or_else(|| NOT_CONFIGURED.to_owned()),
            Err(_) => Err("OpenSearch client lock poisoned".to_owned()),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    pub fn mark_unavailable(&self) {
        self.available.store(false, Ordering::SeqCst);
    }

    /// Checks OpenSearch answers and the template is in place (installing it
    /// when missing, e.g. after OpenSearch came back empty); marks available.
    pub async fn ensure_ready(&self) -> Result<(), String> {
        let client = self.client()?;
        client
            .cluster()
            .health(ClusterHealthParts::None)
            .send()
            .await
            .and_then(|r| r.error_for_status_code())
            .map_err(|e| e.to_string())?;
        let name = self.prefix.as_str();
        let exists = client
            .indices()
            .exists_index_template(IndicesExistsIndexTemplateParts::Name(name))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let installed = self.is_available() && exists.status_code().is_success();
        if !installed {
            // Installed on every (re)connection, so a changed template is applied too.
            client
                .indices()
                .put_index_template(IndicesPutIndexTemplateParts::Name(name))
                .body(index_template(&self.prefix))
                .send()
                .await
                .and_then(|r| r.error_for_status_code())
                .map_err(|e| format!("cannot install index template {name}: {e}"))?;
            tracing::info!(template = name, "audit index template installed");
        }
        self.available.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Indexes `docs` (document id = [`IndexedDoc::id`], so a repeat overwrites
    /// rather than duplicates). `Err` when OpenSearch cannot take the request
    /// at all; then nothing can be assumed indexed.
    pub async fn bulk(&self, docs: &[IndexedDoc]) -> Result<BulkOutcome, BulkError> {
        if docs.is_empty() {
            return Ok(BulkOutcome::default());
        }
        let client = self.client().map_err(BulkError::Unavailable)?;
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(docs.len() * 2);
        for d in docs {
            body.push(json!({"index": {"_index": d.index, "_id": d.id}}).into());
            body.push(
                serde_json::to_value(&d.doc)
                    .map_err(|e| BulkError::Refused(format!("cannot serialize: {e}")))?
                    .into(),
            );
        }
        let res = client
            .bulk(BulkParts::None)
            .body(body)
            .send()
            .await
            .map_err(|e| BulkError::Unavailable(e.to_string()))?;
        let status = res.status_code();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            let reason = format!("bulk answered {status}: {}", truncate(&text, 500));
            return Err(if bulk_status_is_refusal(status.as_u16()) {
                BulkError::Refused(reason)
            } else {
                BulkError::Unavailable(reason)
            });
        }
        let reply: Value = res
            .json()
            .await
            .map_err(|e| BulkError::Unavailable(e.to_string()))?;
        Ok(classify(docs, &reply))
    }

    /// Runs a search over every daily index of the prefix.
    pub async fn search(&self, body: Value) -> Result<Value, SearchError> {
        if !self.is_configured() {
            return Err(SearchError::NotConfigured);
        }
        let client = self.client().map_err(SearchError::Unavailable)?;
        let pattern = index_pattern(&self.prefix);
        let res = client
            .search(SearchParts::Index(&[&pattern]))
            .body(body)
            .send()
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))?;
        let status = res.status_code();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(SearchError::Unavailable(format!(
                "search answered {status}"
            )));
        }
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(SearchError::Refused(truncate(&text, 500)));
        }
        res.json()
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))
    }
}

/// Splits a bulk reply's failed items into permanent and transient ones
/// (429 and 5xx are transient). Items are in request order.
fn classify(docs: &[IndexedDoc], reply: &Value) -> BulkOutcome {
    let mut out = BulkOutcome::default();
    if reply["errors"] != json!(true) {
        return out;
    }
    let items = reply["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (doc, item) in docs.iter().zip(items) {
        let result = item.get("index").unwrap_or(item);
        let status = result["status"].as_u64().unwrap_or(500);
        if status < 300 {
            continue;
        }
        if status == 429 || status >= 500 {
            out.retry.push(doc.clone());
        } else {
            let e = &result["error"];
            let reason = format!(
                "{status} {}: {}",
                e["type"].as_str().unwrap_or("error"),
                e["reason"].as_str().unwrap_or_default()
            );
            out.rejected.push(Rejected {
                reason,
                doc: doc.clone(),
            });
        }
    }
    // A reply with fewer items than documents: retry the unaccounted ones.
    out.retry.extend(docs.iter().skip(items.len()).cloned());
    out
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{RawRecord, Role, build};

    #[test]
    fn bulk_item_errors_are_split_into_permanent_and_transient() {
        let docs: Vec<IndexedDoc> = (0..4)
            .map(|i| {
                let rec = RawRecord {
                    topic: "t".into(),
                    offset: i,
                    ..RawRecord::default()
                };
                build(&rec, Role::Command, "a", chrono::Utc::now())
            })
            .collect();
        let reply = json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
        ]});
        let out = classify(&docs, &reply);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].doc, docs[1]);
        assert_eq!(out.rejected[0].reason, "400 mapper_parsing_exception: bad");
        assert_eq!(out.retry, [docs[2].clone(), docs[3].clone()]);
        let ok = classify(&docs, &json!({"errors": false, "items": []}));
        assert!(ok.rejected.is_empty() && ok.retry.is_empty());
    }

    fn numbered(n: i64) -> Vec<IndexedDoc> {
        (0..n)
            .map(|i| {
                let rec = RawRecord {
                    topic: "t".into(),
                    offset: i,
                    ..RawRecord::default()
                };
                build(&rec, Role::Command, "a", chrono::Utc::now())
            })
            .collect()
    }

    #[test]
    fn only_content_statuses_refuse_a_whole_request() {
        for s in [400, 413, 414, 422] {
            assert!(bulk_status_is_refusal(s), "{s}");
        }
        for s in [401, 403, 404, 408, 429, 500, 502, 503, 504] {
            assert!(!bulk_status_is_refusal(s), "{s}");
        }
    }

    /// A fake OpenSearch refusing any request that holds one of `bad`.
    fn refusing(
        bad: &'static [i64],
        sent: &mut Vec<usize>,
    ) -> impl FnMut(Vec<IndexedDoc>) -> std::future::Ready<Result<BulkOutcome, BulkError>> {
        move |part: Vec<IndexedDoc>| {
            sent.push(part.len());
            let offsets: Vec<i64> = part.iter().map(|d| d.doc.offset).collect();
            std::future::ready(if offsets.iter().any(|o| bad.contains(o)) {
                Err(BulkError::Refused(format!("400 for {offsets:?}")))
            } else {
                Ok(BulkOutcome::default())
            })
        }
    }

    #[tokio::test]
    async fn a_refused_request_is_bisected_to_the_bad_documents() {
        let docs = numbered(16);
        let mut sent = Vec::new();
        let out = bulk_isolating(&docs, refusing(&[5], &mut sent)).await;
        assert!(out.unavailable.is_none() && out.outcome.retry.is_empty());
        assert_eq!(out.outcome.rejected.len(), 1);
        assert_eq!(out.outcome.rejected[0].doc, docs[5]);
        assert_eq!(out.outcome.rejected[0].reason, "400 for [5]");
        // 16 → 8+8 → 4+4 → 2+2 → 1+1, front halves first: 9 requests, not 16.
        assert_eq!(out.requests, 9);
        assert_eq!(sent, [16, 8, 4, 4, 2, 1, 1, 2, 8]);

        let mut sent = Vec::new();
        let out = bulk_isolating(&docs, refusing(&[0, 15], &mut sent)).await;
        let mut refused: Vec<i64> = out
            .outcome
            .rejected
            .iter()
            .map(|r| r.doc.doc.offset)
            .collect();
        refused.sort();
        assert_eq!(refused, [0, 15]);

        let mut sent = Vec::new();
        let out = bulk_isolating(&docs, refusing(&[], &mut sent)).await;
        assert_eq!((out.requests, out.outcome.rejected.len()), (1, 0));
        let out = bulk_isolating(&[], refusing(&[], &mut sent)).await;
        assert_eq!(out.requests, 0);
    }

    #[tokio::test]
    async fn an_outage_midway_keeps_every_untaken_document_for_retry() {
        let docs = numbered(8);
        let mut calls = 0;
        let out = bulk_isolating(&docs, |part: Vec<IndexedDoc>| {
            calls += 1;
            std::future::ready(match calls {
                // Refused whole; the front half is then taken; then the outage.
                1 => Err(BulkError::Refused("400".into())),
                2 => Ok(BulkOutcome::default()),
                _ => Err(BulkError::Unavailable(format!("down at {}", part.len()))),
            })
        })
        .await;
        assert_eq!(out.unavailable.as_deref(), Some("down at 4"));
        assert_eq!(out.outcome.retry, docs[4..]);
        assert!(out.outcome.rejected.is_empty());
    }
}
