//! Several events of one partition at once: the fast path when a partition
//! has a backlog. One PostgreSQL transaction holds their effects and ledger
//! entries (one commit instead of one per event), their statuses are
//! recorded, and every outcome is sent before any acknowledgement is awaited.
//! The caller stores the offset after the last one.
//!
//! Order and exactly-once effects are kept: events are applied in offset
//! order; a MongoDB/Redis command that follows PostgreSQL effects of the same
//! batch runs after they commit (its checks read committed rows); outcomes
//! are sent in order by one idempotent producer. Anything the fast path
//! cannot absorb — a poison event, a broken rule (its statement aborts the
//! transaction), an event someone else recorded first, any store or Kafka
//! fault — abandons the batch with nothing acknowledged, and the events are
//! handled one by one by [`Pipeline::handle`] with its retries and dead
//! letters. That is safe because every step is idempotent: the ledger makes
//! an event whose effects did commit republish its outcome.

use polystream_common::events::{Command, Envelope};
use polystream_common::status::State;
use polystream_common::telemetry::set_correlation_id;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use tracing::Instrument;

use crate::errors::Fault;
use crate::handlers::{self, accounts, ledger, pg_op};
use crate::pipeline::{Incoming, Pipeline, outcome_key, parse, status_of};

type Tx = Transaction<'static, Postgres>;

/// One parsed event of a batch.
struct Item<'a> {
    m: &'a Incoming,
    env: Envelope<Value>,
    cmd: Command,
}

/// Why a batch was abandoned (logged at debug: the events are then handled
/// one by one, which logs whatever is wrong with them).
enum Abandon {
    Poison,
    /// A broken rule or an event already on record.
    NotAbsorbable,
    Fault(Fault),
}

impl From<Fault> for Abandon {
    fn from(f: Fault) -> Self {
        Self::Fault(f)
    }
}

impl Pipeline {
    /// Handles `ms` (consecutive events of one partition) together; `false`
    /// when the batch was abandoned and nothing of it may be acknowledged —
    /// the caller then handles each event with [`Pipeline::handle`].
    pub async fn handle_batch(&self, ms: &[Incoming]) -> bool {
        match self.try_batch(ms).await {
            Ok(()) => true,
            Err(why) => {
                match why {
                    Abandon::Poison => tracing::debug!("batch holds a poison event"),
                    Abandon::NotAbsorbable => {
                        tracing::debug!("batch holds a broken rule or a recorded event");
                    }
                    Abandon::Fault(f) => tracing::debug!(fault = %f, "batch abandoned"),
                }
                self.metrics.batch_abandoned();
                false
            }
        }
    }

    async fn try_batch(&self, ms: &[Incoming]) -> Result<(), Abandon> {
        let mut items = Vec::with_capacity(ms.len());
        for m in ms {
            let (env, cmd) = parse(m.payload.as_deref()).map_err(|_| Abandon::Poison)?;
            set_correlation_id(&m.span, &env.correlationid);
            m.span.record(
                "messaging.message.conversation_id",
                env.correlationid.to_string(),
            );
            items.push(Item { m, env, cmd });
        }
        let outcomes = self.apply_all(&items).await?;
        let mut envelopes = Vec::with_capacity(items.len());
        let mut statuses = Vec::with_capacity(items.len());
        for v in outcomes {
            let outcome: Envelope<Value> =
                serde_json::from_value(v).map_err(|_| Abandon::NotAbsorbable)?;
            let status = status_of(&outcome).ok_or(Abandon::NotAbsorbable)?;
            envelopes.push((outcome, status.state));
            statuses.push(status);
        }
        // Statuses first, so whoever sees an outcome on Kafka can read it at
        // once; each command has its own, so they are written side by side
        // (one pipelined exchange with Redis rather than one per event).
        let recorded = items
            .iter()
            .zip(&statuses)
            .map(|(it, status)| self.record_status(status).instrument(it.m.span.clone()));
        for done in futures::future::join_all(recorded).await {
            done?;
        }
        // Every send is started (in order) before any acknowledgement is awaited.
        let sends = items.iter().zip(&envelopes).map(|(it, (outcome, _))| {
            let key = outcome_key(it.m, &it.cmd);
            async move { self.send_outcome(it.m, &key, outcome).await }
                .instrument(it.m.span.clone())
        });
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        for (it, (outcome, state)) in items.iter().zip(&envelopes) {
            tracing::info!(parent: &it.m.span, event_id = %it.env.id, event_type = %it.env.event_type, outcome = %outcome.event_type, "processed");
            let label = if *state == State::Completed {
                "completed"
            } else {
                "failed"
            };
            polystream_common::metrics::record_process(
                &it.m.topic,
                it.cmd.event_type(),
                label,
                it.m.received.elapsed(),
                &it.m.span,
            );
        }
        self.metrics.batch_done(items.len());
        Ok(())
    }

    /// Applies every item not yet on record and returns the outcomes on
    /// record, in order. Ledger entries wait in `entries` and go in with one
    /// statement before each commit, so an effect and its entry still commit
    /// together.
    async fn apply_all(&self, items: &[Item<'_>]) -> Result<Vec<Value>, Abandon> {
        let pg = &self.stores.pg;
        let ids: Vec<_> = items.iter().map(|it| it.env.id).collect();
        let known = ledger::outcomes(pg, &ids).await?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut entries: Vec<(&Item<'_>, usize)> = Vec::new();
        let mut tx: Option<Tx> = None;
        // Whether `tx` holds PostgreSQL effects (not only ledger entries).
        let mut effects_pending = false;
        for it in items {
            if let Some(v) = known.get(&it.env.id) {
                outcomes.push(v.clone());
                continue;
            }
            let decision = if let Some(w) = handlers::account_write(&it.cmd) {
                let con = open(pg, &mut tx).await?;
                effects_pending = true;
                accounts::effect_in(con, w)
                    .instrument(it.m.span.clone())
                    .await?
                    // A broken rule aborted the transaction.
                    .map_err(|_| Abandon::NotAbsorbable)?
            } else {
                // Its checks read PostgreSQL through the pool: commit what
                // earlier events of the batch wrote there first.
                if effects_pending && let Some(mut t) = tx.take() {
                    record(&mut t, &entries, &outcomes).await?;
                    entries.clear();
                    pg_op("commit", t.commit()).await?;
                    effects_pending = false;
                }
                handlers::effects(&self.stores, &it.env, &it.cmd)
                    .instrument(it.m.span.clone())
                    .await?
            };
            let outcome = self.outcome_envelope(&it.env, &it.cmd, &decision);
            entries.push((it, outcomes.len()));
            outcomes.push(serde_json::to_value(outcome).unwrap_or_default());
        }
        if !entries.is_empty() {
            open(pg, &mut tx).await?;
        }
        if let Some(mut t) = tx {
            record(&mut t, &entries, &outcomes).await?;
            pg_op("commit", t.commit()).await?;
        }
        Ok(outcomes)
    }
}

/// Inserts the waiting ledger entries (`entries`: item and index of its
/// outcome); an event already on record abandons the batch (dropping the
/// transaction rolls back what it holds).
async fn record(
    tx: &mut Tx,
    entries: &[(&Item<'_>, usize)],
    outcomes: &[Value],
) -> Result<(), Abandon> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<polystream_stores::ledger::Entry<'_>> = entries
        .iter()
        .map(|(it, i)| {
            (
                it.env.id,
                it.env.event_type.as_str(),
                it.env.correlationid,
                &outcomes[*i],
            )
        })
        .collect();
    let recorded = polystream_stores::ledger::insert_many(tx, &rows).await?;
    if recorded == rows.len() {
        Ok(())
    } else {
        Err(Abandon::NotAbsorbable)
    }
}

/// The batch's open transaction, begun on first use.
async fn open<'t>(
    pg: &PgPool,
    tx: &'t mut Option<Tx>,
) -> Result<&'t mut sqlx::PgConnection, Fault> {
    if tx.is_none() {
        *tx = Some(pg_op("begin", pg.begin()).await?);
    }
    match tx {
        Some(t) => Ok(&mut **t),
        None => Err(Fault::transient("postgresql", "no transaction")),
    }
}
