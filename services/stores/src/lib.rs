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
//! - [`keys`]: Redis — sessions, command status, title cache, rankings, counters;
//!   and the services' one way to connect to it, with timeouts.
//!
//! It is also the data-access layer: S1's handlers and S2's command handlers
//! call these named, documented functions instead of writing queries inline.
//! Each returns typed rows (or documents rendered for clients) and a
//! [`Fault`] classified by [`fault`], so both services judge a store error
//! the same way (transient: S1 answers 503, S2 retries; permanent: S1
//! answers 500, S2 fails the command). Operation names (the `operation`
//! metric label) are the ones listed in docs/observability.md. By area:
//!
//! - PostgreSQL: [`users`] (profiles, logins, existence), [`subscriptions`],
//!   [`payments`], [`preferences`] — reads for S1, writes for S2 that take
//!   the command's transaction — and [`ledger`], S2's processed events;
//! - MongoDB: [`titles`] (the catalog), [`relations`], [`assets`] (GridFS),
//!   [`views`] (watch history), [`ratings`], [`recommendations`];
//! - Redis: [`cache`] (the title cache: one TTL, one renderer), [`rankings`]
//!   (and the view counter that feeds them), [`counters`], [`sessions`]
//!   (listing a user's sessions), [`ids`] (ids S1 allocates);
//! - [`render`]: BSON → the JSON clients and the cache see;
//! - [`fault`]: what a store error means, decided once for S1 and S2.

pub mod assets;
pub mod cache;
pub mod counters;
pub mod fault;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod mongo;
pub mod payments;
pub mod pg;
pub mod preferences;
pub mod rankings;
pub mod ratings;
pub mod recommendations;
pub mod relations;
pub mod render;
pub mod sessions;
pub mod subscriptions;
pub mod titles;
pub mod users;
pub mod views;

pub use fault::{Class, Fault};
