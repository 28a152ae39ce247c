//! Store connections: the referenced Secrets and keys exist, each store
//! answers, and the Kafka topics exist with the requested partitions. Every
//! result is data (a [`StoreCheck`] that becomes a status condition): a probe
//! never panics and never waits more than a few seconds.
//!
//! `OpenSearchReady` is always reported: without `spec.stores.opensearch` it
//! is `True` with reason `NotConfigured` (S3 then keeps events in its spool,
//! which is a supported mode, not a fault), so the set of conditions does not
//! depend on the spec.
//!
//! Connection URIs carry passwords: messages show them through [`redact`]
//! and scrub any error text that could echo them ([`scrub`]).
//!
//! The pure parts (which Secret keys are needed, what is missing, the topic
//! plan, turning probe results into checks) are separate from the I/O and
//! unit-tested; `tests/stores.rs` runs the probes against the real servers.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use crate::crd::StreamingPlatform;

/// Time allowed to each store's connect-and-ping.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Kafka does more (metadata, then creating and growing topics): its whole budget.
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(8);
/// Reading the referenced Secrets from the API server.
const SECRET_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept in a message (driver errors can be verbose).
const MAX_DETAIL: usize = 512;

pub const SECRETS_READY: &str = "SecretsReady";
pub const KAFKA_READY: &str = "KafkaReady";
pub const POSTGRES_READY: &str = "PostgresReady";
pub const MONGODB_READY: &str = "MongoDBReady";
pub const REDIS_READY: &str = "RedisReady";
pub const OPENSEARCH_READY: &str = "OpenSearchReady";

/// Every condition [`check_stores`] reports, in its order.
pub const CONDITION_TYPES: [&str; 6] = [
    SECRETS_READY,
    KAFKA_READY,
    POSTGRES_READY,
    MONGODB_READY,
    REDIS_READY,
    OPENSEARCH_READY,
];

/// The outcome of one store check, turned into the status condition `condition_type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreCheck {
    /// One of [`CONDITION_TYPES`].
    pub condition_type: &'static str,
    pub ok: bool,
    /// CamelCase: `SecretsFound`, `SecretMissing`, `KeyMissing`,
    /// `SecretUnreadable`, `InvalidUri`, `Unreachable`, `Connected`,
    /// `TopicsReady`, `TopicsFailed`, `ClusterRed`, `Unhealthy`, `NotConfigured`.
    pub reason: String,
    /// For humans: names the store and why. Never contains credentials.
    /// Stable while nothing changes, so a steady state writes no status.
    pub message: String,
}

/// Everything [`check_stores`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// Each referenced Secret's name → its `metadata.resourceVersion` (for the
    /// pod template's config hash: a rotated Secret rolls the pods). Only the
    /// Secrets that exist.
    pub secret_versions: BTreeMap<String, String>,
    /// One per [`CONDITION_TYPES`] entry, in that order.
    pub checks: Vec<StoreCheck>,
    /// Notable changes made this time (e.g. "created Kafka topic x with 6
    /// partitions"), for Events. Empty in a steady state.
    pub actions: Vec<String>,
}

impl StoreReport {
    /// True when every check passed.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The check for `condition_type`, if reported.
    pub fn check(&self, condition_type: &str) -> Option<&StoreCheck> {
        self.checks
            .iter()
            .find(|c| c.condition_type == condition_type)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &StoreCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

/// A store the platform connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Store {
    Kafka,
    Postgres,
    MongoDb,
    Redis,
    OpenSearch,
}

impl Store {
    pub fn condition_type(self) -> &'static str {
        match self {
            Store::Kafka => KAFKA_READY,
            Store::Postgres => POSTGRES_READY,
            Store::MongoDb => MONGODB_READY,
            Store::Redis => REDIS_READY,
            Store::OpenSearch => OPENSEARCH_READY,
        }
    }

    /// The name humans know it by.
    pub fn display(self) -> &'static str {
        match self {
            Store::Kafka => "Kafka",
            Store::Postgres => "PostgreSQL",
            Store::MongoDb => "MongoDB",
            Store::Redis => "Redis",
            Store::OpenSearch => "OpenSearch",
        }
    }
}

// ---------------------------------------------------------------------------
// Pure: which Secret keys are needed and what is missing.

/// One Secret key the platform needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretNeed {
    pub secret: String,
    pub key: String,
    pub store: Store,
    /// Optional keys (a Kafka client certificate) are used when present.
    pub required: bool,
}

/// Keys of the Kafka TLS Secret: the CA is required, a client certificate optional.
pub const KAFKA_TLS_CA: &str = "ca.crt";
pub const KAFKA_TLS_CERT: &str = "tls.crt";
pub const KAFKA_TLS_KEY: &str = "tls.key";
/// Keys of the Kafka SASL Secret (all required).
pub const KAFKA_SASL_KEYS: [&str; 3] = ["mechanism", "username", "password"];

/// Every Secret key `sp` references, in a stable order.
pub fn secret_needs(sp: &StreamingPlatform) -> Vec<SecretNeed> {
    let stores = &sp.spec.stores;
    let need = |secret: &str, key: &str, store, required| SecretNeed {
        secret: secret.to_owned(),
        key: key.to_owned(),
        store,
        required,
    };
    let mut needs = Vec::new();
    if let Some(tls) = &stores.kafka.tls {
        let name = &tls.secret_ref.name;
        needs.push(need(name, KAFKA_TLS_CA, Store::Kafka, true));
        needs.push(need(name, KAFKA_TLS_CERT, Store::Kafka, false));
        needs.push(need(name, KAFKA_TLS_KEY, Store::Kafka, false));
    }
    if let Some(sasl) = &stores.kafka.sasl {
        for key in KAFKA_SASL_KEYS {
            needs.push(need(&sasl.secret_ref.name, key, Store::Kafka, true));
        }
    }
    for (store, r) in [
        (Store::Postgres, &stores.postgres.uri_secret_ref),
        (Store::MongoDb, &stores.mongodb.uri_secret_ref),
        (Store::Redis, &stores.redis.uri_secret_ref),
    ] {
        needs.push(need(&r.name, &r.key, store, true));
    }
    if let Some(r) = stores
        .opensearch
        .as_ref()
        .and_then(|o| o.url_secret_ref.as_ref())
    {
        needs.push(need(&r.name, &r.key, Store::OpenSearch, true));
    }
    needs
}

/// What the API server said about one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLookup {
    /// Its `data`, decoded.
    Found(BTreeMap<String, Vec<u8>>),
    NotFound,
    /// Could not be read (forbidden, API server down...): the error.
    Unreadable(String),
}

/// Why a needed key has no usable value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    SecretMissing,
    SecretUnreadable(String),
    KeyMissing,
    /// Present but empty or not UTF-8.
    KeyInvalid(&'static str),
}

impl Problem {
    fn reason(&self) -> &'static str {
        match self {
            Problem::SecretMissing => "SecretMissing",
            Problem::SecretUnreadable(_) => "SecretUnreadable",
            Problem::KeyMissing => "KeyMissing",
            Problem::KeyInvalid(_) => "KeyInvalid",
        }
    }

    fn describe(&self, secret: &str, key: &str) -> String {
        match self {
            Problem::SecretMissing => format!("Secret {secret} does not exist"),
            Problem::SecretUnreadable(e) => format!("Secret {secret} cannot be read: {e}"),
            Problem::KeyMissing => format!("Secret {secret} has no key {key}"),
            Problem::KeyInvalid(why) => format!("key {key} of Secret {secret} is {why}"),
        }
    }
}

/// The needed keys resolved against the Secrets read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedSecrets {
    /// (secret, key) → value, for every usable key.
    pub values: BTreeMap<(String, String), String>,
    /// Required keys without a usable value, in [`secret_needs`] order.
    pub problems: Vec<(SecretNeed, Problem)>,
}

impl ResolvedSecrets {
    pub fn value(&self, secret: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(secret.to_owned(), key.to_owned()))
            .map(String::as_str)
    }

    /// The first problem blocking `store`, as a failed check for its condition.
    pub fn blocking(&self, store: Store) -> Option<StoreCheck> {
        let (need, problem) = self.problems.iter().find(|(n, _)| n.store == store)?;
        Some(StoreCheck {
            condition_type: store.condition_type(),
            ok: false,
            reason: problem.reason().to_owned(),
            message: format!(
                "{} is not probed: {}",
                store.display(),
                problem.describe(&need.secret, &need.key)
            ),
        })
    }

    /// The `SecretsReady` check: every required key usable, else what is missing.
    pub fn check(&self) -> StoreCheck {
        if self.problems.is_empty() {
            return StoreCheck {
                condition_type: SECRETS_READY,
                ok: true,
                reason: "SecretsFound".to_owned(),
                message: "every referenced Secret and key exists".to_owned(),
            };
        }
        // One line per problem; a missing or unreadable Secret is named once.
        let mut lines: Vec<String> = Vec::new();
        for (need, problem) in &self.problems {
            let line = format!(
                "{} (for {})",
                problem.describe(&need.secret, &need.key),
                stores_using(&self.problems, need, problem)
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        StoreCheck {
            condition_type: SECRETS_READY,
            ok: false,
            reason: self.problems[0].1.reason().to_owned(),
            message: lines.join("; "),
        }
    }
}

/// The stores affected by the same problem (a whole missing Secret may serve several).
fn stores_using(
    problems: &[(SecretNeed, Problem)],
    need: &SecretNeed,
    problem: &Problem,
) -> String {
    let whole_secret = matches!(
        problem,
        Problem::SecretMissing | Problem::SecretUnreadable(_)
    );
    let mut stores: Vec<Store> = problems
        .iter()
        .filter(|(n, p)| {
            n.secret == need.secret && p == problem && (whole_secret || n.key == need.key)
        })
        .map(|(n, _)| n.store)
        .collect();
    stores.sort();
    stores.dedup();
    stores
        .iter()
        .map(|s| s.display())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves `needs` against the Secrets read (pure).
pub fn resolve_secrets(
    needs: &[SecretNeed],
    lookups: &BTreeMap<String, SecretLookup>,
) -> ResolvedSecrets {
    let mut resolved = ResolvedSecrets::default();
    for need in needs {
        let problem = match lookups.get(&need.secret) {
            None | Some(SecretLookup::NotFound) => Some(Problem::SecretMissing),
            Some(SecretLookup::Unreadable(e)) => Some(Problem::SecretUnreadable(e.clone())),
            Some(SecretLookup::Found(data)) => match data.get(&need.key) {
                None => Some(Problem::KeyMissing),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Err(_) => Some(Problem::KeyInvalid("not UTF-8 text")),
                    Ok(text) if text.trim().is_empty() => Some(Problem::KeyInvalid("empty")),
                    Ok(text) => {
                        resolved.values.insert(
                            (need.secret.clone(), need.key.clone()),
                            text.trim().to_owned(),
                        );
                        None
                    }
                },
            },
        };
        if let Some(problem) = problem
            && need.required
        {
            resolved.problems.push((need.clone(), problem));
        }
    }
    resolved
}

// ---------------------------------------------------------------------------
// Pure: redaction.

/// `scheme://user:password@host/...` → `scheme://***@host/...`: the URI with
/// its credentials hidden, so a message can still say where it points.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        // Not a URI we understand: say nothing about it.
        return "(unparseable URI)".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{tail}", &authority[at + 1..]),
        None => uri.to_owned(),
    }
}

/// Removes the URI and its password from `text` (driver errors sometimes echo
/// them), and caps its length.
pub fn scrub(text: &str, uri: &str) -> String {
    let mut out = text.replace(uri, &redact(uri));
    if let Some(password) = password_of(uri)
        && password.len() >= 3
    {
        out = out.replace(password, "***");
    }
    if out.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

fn password_of(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, p)| p)
}

// ---------------------------------------------------------------------------
// Pure: probe results → checks.

/// Why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    /// CamelCase reason, e.g. `Unreachable`.
    pub reason: &'static str,
    /// What went wrong, already scrubbed of credentials.
    pub detail: String,
}

impl ProbeFailure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// A probe's result: on success the reason and a stable description.
pub type ProbeResult = Result<(&'static str, String), ProbeFailure>;

/// The condition for `store` reached at `target` (already redacted).
pub fn to_check(store: Store, target: &str, result: ProbeResult) -> StoreCheck {
    match result {
        Ok((reason, detail)) => StoreCheck {
            condition_type: store.condition_type(),
            ok: true,
            reason: reason.to_owned(),
            message: format!("{} at {target}: {detail}", store.display()),
        },
        Err(f) => StoreCheck {
            condition_type: store.condition_type(),
            ok: false,
            reason: f.reason.to_owned(),
            message: if f.reason == "Unreachable" {
                format!(
                    "{} at {target} is unreachable: {}",
                    store.display(),
                    f.detail
                )
            } else {
                format!("{} at {target}: {}", store.display(), f.detail)
            },
        },
    }
}

/// What to do to the Kafka topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPlan {
    /// Topics to create with the requested partitions.
    pub create: Vec<String>,
    /// (topic, current partitions): grow to the requested count.
    pub grow: Vec<(String, usize)>,
    /// (topic, current partitions) with more than requested: left alone (never shrunk).
    pub larger: Vec<(String, usize)>,
}

/// Compares the topics that exist (name → partitions) with the wanted ones (pure).
pub fn plan_topics(
    existing: &BTreeMap<String, usize>,
    wanted: &[&str],
    partitions: usize,
) -> TopicPlan {
    let mut plan = TopicPlan::default();
    // Several topics in the spec may share a name: plan each once.
    let mut seen = std::collections::BTreeSet::new();
    for &name in wanted {
        if !seen.insert(name) {
            continue;
        }
        match existing.get(name) {
            None => plan.create.push(name.to_owned()),
            Some(&have) if have < partitions => plan.grow.push((name.to_owned(), have)),
            Some(&have) if have > partitions => plan.larger.push((name.to_owned(), have)),
            Some(_) => {}
        }
    }
    plan
}

// ---------------------------------------------------------------------------
// I/O.

/// Reads the Secrets `sp` references and probes every store concurrently.
/// Never fails and never takes much longer than [`KAFKA_TIMEOUT`] plus the
/// Secret reads: problems are checks with `ok: false`.
pub async fn check_stores(client: &kube::Client, sp: &StreamingPlatform) -> StoreReport {
    let namespace = sp.namespace().unwrap_or_else(|| "default".to_owned());
    let needs = secret_needs(sp);
    let (lookups, secret_versions) = read_secrets(client, &namespace, &needs).await;
    let resolved = resolve_secrets(&needs, &lookups);
    let stores = &sp.spec.stores;
    let uri = |r: &crate::crd::SecretKeyRef| resolved.value(&r.name, &r.key).map(str::to_owned);

    let kafka = async {
        if let Some(blocked) = resolved.blocking(Store::Kafka) {
            return (blocked, Vec::new());
        }
        let settings = kafka_settings(stores, &resolved);
        kafka_probe(&stores.kafka, settings).await
    };
    let postgres = probe_uri(
        Store::Postgres,
        &resolved,
        uri(&stores.postgres.uri_secret_ref),
        |u| Box::pin(postgres_probe(u)),
    );
    let mongodb = probe_uri(
        Store::MongoDb,
        &resolved,
        uri(&stores.mongodb.uri_secret_ref),
        |u| Box::pin(mongodb_probe(u)),
    );
    let redis = probe_uri(
        Store::Redis,
        &resolved,
        uri(&stores.redis.uri_secret_ref),
        |u| Box::pin(redis_probe(u)),
    );
    let opensearch = async {
        match &stores.opensearch {
            None => StoreCheck {
                condition_type: OPENSEARCH_READY,
                ok: true,
                reason: "NotConfigured".to_owned(),
                message: "OpenSearch is not configured: S3 keeps events in its local spool"
                    .to_owned(),
            },
            Some(os) => {
                let url = match (&os.url, &os.url_secret_ref) {
                    (Some(url), _) => Some(url.clone()),
                    (None, Some(r)) => uri(r),
                    (None, None) => None,
                };
                probe_uri(Store::OpenSearch, &resolved, url, |u| {
                    Box::pin(opensearch_probe(u))
                })
                .await
            }
        }
    };
    let ((kafka, actions), postgres, mongodb, redis, opensearch) =
        futures::join!(kafka, postgres, mongodb, redis, opensearch);
    StoreReport {
        secret_versions,
        checks: vec![
            resolved.check(),
            kafka,
            postgres,
            mongodb,
            redis,
            opensearch,
        ],
        actions,
    }
}

type ProbeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = ProbeResult> + Send + 'a>>;

/// Runs `probe` on the store's URI within [`PROBE_TIMEOUT`], or reports why it cannot.
async fn probe_uri(
    store: Store,
    resolved: &ResolvedSecrets,
    uri: Option<String>,
    probe: impl for<'u> FnOnce(&'u str) -> ProbeFuture<'u>,
) -> StoreCheck {
    if let Some(blocked) = resolved.blocking(store) {
        return blocked;
    }
    let Some(uri) = uri else {
        return StoreCheck {
            condition_type: store.condition_type(),
            ok: false,
            reason: "NotConfigured".to_owned(),
            message: format!("{} has no URI", store.display()),
        };
    };
    let target = redact(&uri);
    let result = match tokio::time::timeout(PROBE_TIMEOUT, probe(&uri)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeFailure::new(
            "Unreachable",
            format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
        )),
    };
    let result = result.map_err(|f| ProbeFailure::new(f.reason, scrub(&f.detail, &uri)));
    to_check(store, &target, result)
}

/// Reads each referenced Secret once.
async fn read_secrets(
    client: &kube::Client,
    namespace: &str,
    needs: &[SecretNeed],
) -> (BTreeMap<String, SecretLookup>, BTreeMap<String, String>) {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut names: Vec<&str> = needs.iter().map(|n| n.secret.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let reads = names.iter().map(|&name| {
        let api = api.clone();
        async move {
            let read = tokio::time::timeout(SECRET_TIMEOUT, api.get_opt(name)).await;
            (name.to_owned(), read)
        }
    });
    let mut lookups = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (name, read) in futures::future::join_all(reads).await {
        let lookup = match read {
            Err(_) => SecretLookup::Unreadable("the API server did not answer in time".into()),
            Ok(Err(e)) => SecretLookup::Unreadable(e.to_string()),
            Ok(Ok(None)) => SecretLookup::NotFound,
            Ok(Ok(Some(secret))) => {
                if let Some(rv) = secret.metadata.resource_version.clone() {
                    versions.insert(name.clone(), rv);
                }
                SecretLookup::Found(
                    secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                )
            }
        };
        lookups.insert(name, lookup);
    }
    (lookups, versions)
}

/// librdkafka settings for the brokers' TLS and SASL (pure).
pub fn kafka_settings(
    stores: &crate::crd::StoresSpec,
    resolved: &ResolvedSecrets,
) -> Vec<(&'static str, String)> {
    let kafka = &stores.kafka;
    let mut settings = vec![("bootstrap.servers", kafka.bootstrap_servers.clone())];
    let protocol = match (kafka.tls.is_some(), kafka.sasl.is_some()) {
        (false, false) => None,
        (true, false) => Some("SSL"),
        (false, true) => Some("SASL_PLAINTEXT"),
        (true, true) => Some("SASL_SSL"),
    };
    if let Some(protocol) = protocol {
        settings.push(("security.protocol", protocol.to_owned()));
    }
    if let Some(tls) = &kafka.tls {
        let name = &tls.secret_ref.name;
        for (key, setting) in [
            (KAFKA_TLS_CA, "ssl.ca.pem"),
            (KAFKA_TLS_CERT, "ssl.certificate.pem"),
            (KAFKA_TLS_KEY, "ssl.key.pem"),
        ] {
            if let Some(v) = resolved.value(name, key) {
                settings.push((setting, v.to_owned()));
            }
        }
    }
    if let Some(sasl) = &kafka.sasl {
        let name = &sasl.secret_ref.name;
        for (key, setting) in [
            ("mechanism", "sasl.mechanism"),
            ("username", "sasl.username"),
            ("password", "sasl.password"),
        ] {
            if let Some(v) = resolved.value(name, key) {
                settings.push((setting, v.to_owned()));
            }
        }
    }
    settings
}

/// Kafka: metadata, then the topics created or grown to the spec's partitions.
async fn kafka_probe(
    spec: &crate::crd::KafkaSpec,
    settings: Vec<(&'static str, String)>,
) -> (StoreCheck, Vec<String>) {
    let target = spec.bootstrap_servers.clone();
    let secrets: Vec<String> = settings
        .iter()
        .filter(|(k, _)| matches!(*k, "sasl.password" | "ssl.key.pem"))
        .map(|(_, v)| v.clone())
        .collect();
    let topics = [
        spec.topics.user_events.clone(),
        spec.topics.response_events.clone(),
        spec.topics.dead_letter.clone(),
    ];
    let partitions = usize::try_from(spec.partitions.max(1)).unwrap_or(1);
    let replication = spec.replication_factor;
    // librdkafka calls block (metadata) and its futures are driven by its own
    // thread: run the whole exchange off the async workers.
    let work = tokio::task::spawn_blocking(move || {
        kafka_exchange(&settings, &topics, partitions, replication)
    });
    let (result, actions) = match tokio::time::timeout(KAFKA_TIMEOUT, work).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => (
            Err(ProbeFailure::new(
                "ProbeFailed",
                format!("the probe crashed: {e}"),
            )),
            Vec::new(),
        ),
        Err(_) => (
            Err(ProbeFailure::new(
                "Unreachable",
                format!("no answer within {}s", KAFKA_TIMEOUT.as_secs()),
            )),
            Vec::new(),
        ),
    };
    let result = result.map_err(|mut f| {
        for secret in &secrets {
            f.detail = f.detail.replace(secret.as_str(), "***");
        }
        f
    });
    (to_check(Store::Kafka, &target, result), actions)
}

fn kafka_exchange(
    settings: &[(&'static str, String)],
    topics: &[String; 3],
    partitions: usize,
    replication: i32,
) -> (ProbeResult, Vec<String>) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;

    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in settings {
        config.set(*k, v);
    }
    // Fail fast on a dead address instead of librdkafka's long defaults.
    config.set("socket.connection.setup.timeout.ms", "3000");
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(a) => a,
        Err(e) => {
            return (
                Err(ProbeFailure::new(
                    "ClientConfig",
                    format!("invalid client settings: {e}"),
                )),
                Vec::new(),
            );
        }
    };
    let metadata = match admin.inner().fetch_metadata(None, PROBE_TIMEOUT) {
        Ok(m) => m,
        Err(e) => {
            return (
                Err(ProbeFailure::new("Unreachable", e.to_string())),
                Vec::new(),
            );
        }
    };
    let brokers = metadata.brokers().len();
    let existing: BTreeMap<String, usize> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() || !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    let wanted: Vec<&str> = topics.iter().map(String::as_str).collect();
    let plan = plan_topics(&existing, &wanted, partitions);
    let opts = AdminOptions::new()
        .request_timeout(Some(PROBE_TIMEOUT))
        .operation_timeout(Some(PROBE_TIMEOUT));
    let mut actions = Vec::new();
    let mut failures = Vec::new();
    if !plan.create.is_empty() {
        let new: Vec<NewTopic> = plan
            .create
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    i32::try_from(partitions).unwrap_or(i32::MAX),
                    TopicReplication::Fixed(replication),
                )
            })
            .collect();
        match futures::executor::block_on(admin.create_topics(&new, &opts)) {
            Err(e) => failures.push(format!("cannot create topics: {e}")),
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(name) => actions.push(format!(
                            "created Kafka topic {name} with {partitions} partitions \
                             (replication factor {replication})"
                        )),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => failures.push(format!("cannot create {name}: {code}")),
                    }
                }
            }
        }
    }
    if !plan.grow.is_empty() {
        let grow: Vec<NewPartitions> = plan
            .grow
            .iter()
            .map(|(n, _)| NewPartitions::new(n, partitions))
            .collect();
        match futures::executor::block_on(admin.create_partitions(&grow, &opts)) {
            Err(e) => failures.push(format!("cannot add partitions: {e}")),
            Ok(results) => {
                for (r, (_, had)) in results.into_iter().zip(&plan.grow) {
                    match r {
                        Ok(name) => actions.push(format!(
                            "extended Kafka topic {name} from {had} to {partitions} partitions"
                        )),
                        Err((name, code)) => {
                            failures.push(format!("cannot add partitions to {name}: {code}"));
                        }
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        return (
            Err(ProbeFailure::new("TopicsFailed", failures.join("; "))),
            actions,
        );
    }
    let mut detail = format!(
        "{brokers} broker(s); topics {} have at least {partitions} partitions",
        wanted.join(", ")
    );
    for (name, have) in &plan.larger {
        detail.push_str(&format!(
            " ({name} has {have}; partitions are never removed)"
        ));
    }
    (Ok(("TopicsReady", detail)), actions)
}

fn failure(reason: &'static str) -> impl Fn(String) -> ProbeFailure {
    move |detail| ProbeFailure::new(reason, detail)
}

/// PostgreSQL: connect and `SELECT 1`.
async fn postgres_probe(uri: &str) -> ProbeResult {
    use sqlx::Connection;
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(uri)
        .map_err(|e| failure("InvalidUri")(e.to_string()))?;
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| failure("Unreachable")(e.to_string()))?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| failure("QueryFailed")(e.to_string()))?;
    let _ = conn.close().await;
    if one == 1 {
        Ok(("Connected", "connected and ran SELECT 1".to_owned()))
    } else {
        Err(failure("QueryFailed")(format!("SELECT 1 returned {one}")))
    }
}

/// MongoDB (or FerretDB): `ping`.
async fn mongodb_probe(uri: &str) -> ProbeResult {
    use mongodb::options::ClientOptions;
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|e| failure("InvalidUri")(e.to_string()))?;
    // Shorter than the probe's own limit, so the driver's reason (e.g.
    // "Connection refused") is reported rather than a bare timeout.
    let inner = PROBE_TIMEOUT.saturating_sub(Duration::from_millis(500));
    options.server_selection_timeout = Some(inner);
    options.connect_timeout = Some(inner);
    let client =
        mongodb::Client::with_options(options).map_err(|e| failure("InvalidUri")(e.to_string()))?;
    let pinged = client
        .database("admin")
        .run_command(mongodb::bson::doc! {"ping": 1})
        .await;
    // Stops the driver's monitoring tasks now rather than at some later drop.
    client.shutdown().await;
    pinged
        .map(|_| ("Connected", "answered ping".to_owned()))
        .map_err(|e| failure("Unreachable")(mongo_detail(&e.to_string())))
}

/// The driver's server-selection error dumps its whole topology; keep the
/// servers' own errors (pure).
pub fn mongo_detail(text: &str) -> String {
    if !text.contains("Server selection timeout") {
        return text.to_owned();
    }
    let causes: Vec<&str> = text
        .split("Error: Kind: ")
        .skip(1)
        .filter_map(|part| part.split(", labels").next())
        .collect();
    if causes.is_empty() {
        "server selection timed out".to_owned()
    } else {
        format!("server selection timed out: {}", causes.join("; "))
    }
}

/// Redis: `PING`.
async fn redis_probe(uri: &str) -> ProbeResult {
    let client = redis::Client::open(uri).map_err(|e| failure("InvalidUri")(e.to_string()))?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| failure("Unreachable")(e.to_string()))?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .map_err(|e| failure("Unreachable")(e.to_string()))?;
    Ok(("Connected", format!("answered PING with {pong}")))
}

/// OpenSearch: `GET /_cluster/health`; red is a failure.
async fn opensearch_probe(url: &str) -> ProbeResult {
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| failure("ClientConfig")(e.to_string()))?;
    let health = format!("{}/_cluster/health", url.trim_end_matches('/'));
    let response = client
        .get(&health)
        .send()
        .await
        .map_err(|e| failure("Unreachable")(without_url(e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failure("Unhealthy")(format!(
            "GET /_cluster/health answered {status}"
        )));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| failure("Unhealthy")(without_url(e)))?;
    cluster_health(&body)
}

/// reqwest's errors repeat the URL (with its credentials): keep only the cause.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Judges a `/_cluster/health` answer (pure).
pub fn cluster_health(body: &serde_json::Value) -> ProbeResult {
    match body.get("status").and_then(|s| s.as_str()) {
        Some("red") => Err(ProbeFailure::new(
            "ClusterRed",
            "cluster health is red: some primary shards are unassigned",
        )),
        Some(s @ ("green" | "yellow")) => Ok(("Connected", format!("cluster health is {s}"))),
        other => Err(ProbeFailure::new(
            "Unhealthy",
            format!("unexpected cluster health status {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::crd::{LocalSecretRef, OpenSearchSpec, SecretKeyRef, SecretRefHolder};

    fn sample() -> StreamingPlatform {
        serde_saphyr::from_str(include_str!("../../k8s/samples/streamingplatform.yaml")).unwrap()
    }

    fn found(keys: &[(&str, &str)]) -> SecretLookup {
        SecretLookup::Found(
            keys.iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn sample_secret() -> SecretLookup {
        let sp = sample();
        let s = &sp.spec.stores;
        found(&[
            (&s.postgres.uri_secret_ref.key, "postgres://u:pw@pg/db"),
            (&s.mongodb.uri_secret_ref.key, "mongodb://m/db"),
            (&s.redis.uri_secret_ref.key, "redis://r:6379"),
            ("opensearch-url", "http://os:9200"),
        ])
    }

    #[test]
    fn needs_follow_the_spec() {
        let mut sp = sample();
        let needs = secret_needs(&sp);
        let stores: Vec<Store> = needs.iter().map(|n| n.store).collect();
        assert_eq!(
            stores,
            [
                Store::Postgres,
                Store::MongoDb,
                Store::Redis,
                Store::OpenSearch
            ]
        );
        sp.spec.stores.opensearch = None;
        assert_eq!(secret_needs(&sp).len(), 3, "no OpenSearch, no key");

        sp.spec.stores.kafka.tls = Some(SecretRefHolder {
            secret_ref: LocalSecretRef { name: "tls".into() },
        });
        sp.spec.stores.kafka.sasl = Some(SecretRefHolder {
            secret_ref: LocalSecretRef {
                name: "sasl".into(),
            },
        });
        sp.spec.stores.opensearch = Some(OpenSearchSpec {
            url: None,
            url_secret_ref: Some(SecretKeyRef {
                name: "os".into(),
                key: "url".into(),
            }),
        });
        let needs = secret_needs(&sp);
        let required: Vec<(&str, &str)> = needs
            .iter()
            .filter(|n| n.required)
            .map(|n| (n.secret.as_str(), n.key.as_str()))
            .collect();
        assert!(required.contains(&("tls", "ca.crt")));
        assert!(
            !required.contains(&("tls", "tls.crt")),
            "client cert is optional"
        );
        assert!(required.contains(&("sasl", "password")));
        assert!(required.contains(&("os", "url")));
    }

    #[test]
    fn all_present_is_ready() {
        let sp = sample();
        let name = sp.spec.stores.postgres.uri_secret_ref.name.clone();
        let lookups = BTreeMap::from([(name.clone(), sample_secret())]);
        let resolved = resolve_secrets(&secret_needs(&sp), &lookups);
        let check = resolved.check();
        assert!(check.ok, "{check:?}");
        assert_eq!(check.reason, "SecretsFound");
        assert_eq!(
            resolved.value(&name, &sp.spec.stores.redis.uri_secret_ref.key),
            Some("redis://r:6379")
        );
        assert!(resolved.blocking(Store::Redis).is_none());
    }

    #[test]
    fn a_missing_secret_is_named_once_with_every_store_it_serves() {
        let sp = sample();
        let name = sp.spec.stores.postgres.uri_secret_ref.name.clone();
        let resolved = resolve_secrets(&secret_needs(&sp), &BTreeMap::new());
        let check = resolved.check();
        assert!(!check.ok);
        assert_eq!(check.reason, "SecretMissing");
        assert_eq!(
            check.message,
            format!("Secret {name} does not exist (for PostgreSQL, MongoDB, Redis, OpenSearch)")
        );
        let redis = resolved.blocking(Store::Redis).unwrap();
        assert_eq!(redis.condition_type, REDIS_READY);
        assert_eq!(redis.reason, "SecretMissing");
        assert!(
            redis.message.starts_with("Redis is not probed"),
            "{}",
            redis.message
        );
        assert!(resolved.blocking(Store::Kafka).is_none());
    }

    #[test]
    fn missing_and_empty_keys_are_named() {
        let sp = sample();
        let s = &sp.spec.stores;
        let name = s.postgres.uri_secret_ref.name.clone();
        let lookups = BTreeMap::from([(
            name.clone(),
            found(&[
                (&s.postgres.uri_secret_ref.key, "postgres://pg/db"),
                (&s.mongodb.uri_secret_ref.key, "  "),
                ("opensearch-url", "http://os:9200"),
            ]),
        )]);
        let resolved = resolve_secrets(&secret_needs(&sp), &lookups);
        let check = resolved.check();
        assert!(!check.ok);
        assert_eq!(check.reason, "KeyInvalid");
        let mongo_key = &s.mongodb.uri_secret_ref.key;
        let redis_key = &s.redis.uri_secret_ref.key;
        assert_eq!(
            check.message,
            format!(
                "key {mongo_key} of Secret {name} is empty (for MongoDB); \
                 Secret {name} has no key {redis_key} (for Redis)"
            )
        );
        assert!(resolved.blocking(Store::Postgres).is_none());
        assert_eq!(
            resolved.blocking(Store::Redis).unwrap().reason,
            "KeyMissing"
        );
    }

    #[test]
    fn unreadable_secret_carries_the_error() {
        let sp = sample();
        let name = sp.spec.stores.postgres.uri_secret_ref.name.clone();
        let lookups = BTreeMap::from([(name, SecretLookup::Unreadable("forbidden".into()))]);
        let check = resolve_secrets(&secret_needs(&sp), &lookups).check();
        assert_eq!(check.reason, "SecretUnreadable");
        assert!(
            check.message.contains("cannot be read: forbidden"),
            "{}",
            check.message
        );
    }

    #[test]
    fn redaction_hides_credentials_but_keeps_the_address() {
        assert_eq!(
            redact("postgres://user:s3cret@db:5432/app?sslmode=require"),
            "postgres://***@db:5432/app?sslmode=require"
        );
        assert_eq!(redact("redis://:pw@r:6379/0"), "redis://***@r:6379/0");
        assert_eq!(redact("mongodb://m1,m2/db"), "mongodb://m1,m2/db");
        // An '@' in the path is not userinfo.
        assert_eq!(redact("http://os:9200/a@b"), "http://os:9200/a@b");
        // Passwords may contain '@' when not encoded: everything up to the last one is hidden.
        assert_eq!(redact("redis://u:p@ss@r:1"), "redis://***@r:1");
        assert_eq!(redact("garbage"), "(unparseable URI)");
    }

    #[test]
    fn scrub_removes_uri_and_password_from_errors() {
        let uri = "postgres://user:hunter22@db/app";
        let text = format!("error connecting to {uri}: auth failed for password hunter22");
        let clean = scrub(&text, uri);
        assert!(!clean.contains("hunter22"), "{clean}");
        assert!(clean.contains("postgres://***@db/app"), "{clean}");
        let long = "x".repeat(2000);
        assert!(scrub(&long, uri).chars().count() <= MAX_DETAIL + 1);
    }

    #[test]
    fn probe_results_become_conditions_naming_the_store() {
        let ok = to_check(
            Store::Redis,
            "redis://***@r:6379",
            Ok(("Connected", "answered PING with PONG".into())),
        );
        assert!(ok.ok);
        assert_eq!(ok.condition_type, REDIS_READY);
        assert_eq!(
            ok.message,
            "Redis at redis://***@r:6379: answered PING with PONG"
        );
        let bad = to_check(
            Store::Postgres,
            "postgres://***@127.0.0.1:1/db",
            Err(ProbeFailure::new("Unreachable", "Connection refused")),
        );
        assert!(!bad.ok);
        assert_eq!(bad.reason, "Unreachable");
        assert_eq!(
            bad.message,
            "PostgreSQL at postgres://***@127.0.0.1:1/db is unreachable: Connection refused"
        );
    }

    #[test]
    fn topic_plan_creates_grows_and_never_shrinks() {
        let existing = BTreeMap::from([
            ("a".to_owned(), 3),
            ("b".to_owned(), 6),
            ("c".to_owned(), 12),
        ]);
        let plan = plan_topics(&existing, &["a", "b", "c", "d"], 6);
        assert_eq!(plan.create, ["d"]);
        assert_eq!(plan.grow, [("a".to_owned(), 3)]);
        assert_eq!(plan.larger, [("c".to_owned(), 12)]);
        assert_eq!(plan_topics(&existing, &["b"], 6), TopicPlan::default());
        let shared = plan_topics(&existing, &["d", "a", "d"], 6);
        assert_eq!(shared.create, ["d"]);
    }

    #[test]
    fn kafka_settings_follow_tls_and_sasl() {
        let mut sp = sample();
        let none = kafka_settings(&sp.spec.stores, &ResolvedSecrets::default());
        assert_eq!(
            none,
            [(
                "bootstrap.servers",
                sp.spec.stores.kafka.bootstrap_servers.clone()
            )]
        );

        sp.spec.stores.kafka.tls = Some(SecretRefHolder {
            secret_ref: LocalSecretRef { name: "tls".into() },
        });
        sp.spec.stores.kafka.sasl = Some(SecretRefHolder {
            secret_ref: LocalSecretRef {
                name: "sasl".into(),
            },
        });
        let lookups = BTreeMap::from([
            ("tls".to_owned(), found(&[("ca.crt", "CA")])),
            (
                "sasl".to_owned(),
                found(&[("mechanism", "PLAIN"), ("username", "u"), ("password", "p")]),
            ),
        ]);
        let resolved = resolve_secrets(&secret_needs(&sp), &lookups);
        let settings: BTreeMap<_, _> = kafka_settings(&sp.spec.stores, &resolved)
            .into_iter()
            .collect();
        assert_eq!(settings["security.protocol"], "SASL_SSL");
        assert_eq!(settings["ssl.ca.pem"], "CA");
        assert!(!settings.contains_key("ssl.certificate.pem"));
        assert_eq!(settings["sasl.mechanism"], "PLAIN");
        assert_eq!(settings["sasl.password"], "p");
    }

    #[test]
    fn mongo_topology_dumps_are_shortened() {
        let text = "Kind: Server selection timeout: No available servers. Topology: { Type: \
            Unknown, Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: \
            Connection refused (os error 111), labels: {\"RetryableError\"}, source: None } ] }, \
            labels: {}, source: None";
        assert_eq!(
            mongo_detail(text),
            "server selection timed out: I/O error: Connection refused (os error 111)"
        );
        assert_eq!(mongo_detail("auth failed"), "auth failed");
    }

    #[tokio::test]
    async fn kafka_security_settings_fail_as_data_without_leaking_the_password() {
        let mut sp = sample();
        sp.spec.stores.kafka.bootstrap_servers = "127.0.0.1:1".into();
        sp.spec.stores.kafka.sasl = Some(SecretRefHolder {
            secret_ref: LocalSecretRef {
                name: "sasl".into(),
            },
        });
        let lookups = BTreeMap::from([(
            "sasl".to_owned(),
            found(&[
                ("mechanism", "PLAIN"),
                ("username", "u"),
                ("password", "hunter2-secret"),
            ]),
        )]);
        let resolved = resolve_secrets(&secret_needs(&sp), &lookups);
        let settings = kafka_settings(&sp.spec.stores, &resolved);
        let started = std::time::Instant::now();
        let (check, actions) = kafka_probe(&sp.spec.stores.kafka, settings).await;
        assert!(!check.ok, "{check:?}");
        assert!(actions.is_empty());
        assert!(!check.message.contains("hunter2-secret"), "{check:?}");
        assert!(
            check.message.starts_with("Kafka at 127.0.0.1:1"),
            "{check:?}"
        );
        assert!(started.elapsed() < KAFKA_TIMEOUT + Duration::from_secs(1));
    }

    #[test]
    fn cluster_health_red_is_a_failure() {
        let ok = cluster_health(&serde_json::json!({"status": "yellow"})).unwrap();
        assert_eq!(ok.1, "cluster health is yellow");
        let red = cluster_health(&serde_json::json!({"status": "red"})).unwrap_err();
        assert_eq!(red.reason, "ClusterRed");
        let odd = cluster_health(&serde_json::json!({})).unwrap_err();
        assert_eq!(odd.reason, "Unhealthy");
    }
}
