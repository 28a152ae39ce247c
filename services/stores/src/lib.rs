//! The data model of every Polystream store, in one place: which service may
//! write what, table and collection names, document shapes, Redis keys. The
//! processor (S2) owns every write except sessions, the title cache and blob
//! uploads, which the gateway (S1) owns; the gateway reads the stores directly.
//!
//! - [`pg`]: PostgreSQL — users, subscriptions, payments, preferences, and the
//!   processed-event ledger. Migrations are embedded and applied under
//!   PostgreSQL's advisory lock, so replicas starting together are safe.
//! - [`mongo`]: MongoDB — catalog, title relations, assets (GridFS), views,
//!   ratings, recommendations. Only features FerretDB v1 also supports are used
//!   (see docs/ferretdb.md): no transactions, `$lookup`, `$unwind` or TTL.
//! - [`keys`]: Redis — sessions, command status, title cache, rankings, counters.

pub mod keys;
pub mod mongo;
pub mod pg;
