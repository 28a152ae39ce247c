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
//!
//! It is also the data-access layer both services call instead of writing
//! queries inline: [`users`], [`titles`], [`cache`] (the title cache: one
//! TTL, one renderer), [`render`] (BSON → JSON), and [`fault`] — what a store
//! error means (transient: retry; permanent: fail), decided once for S1 and S2.

pub mod cache;
pub mod fault;
pub mod keys;
pub mod mongo;
pub mod pg;
pub mod render;
pub mod titles;
pub mod users;

pub use fault::{Class, Fault};
