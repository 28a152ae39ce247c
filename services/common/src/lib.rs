//! Shared foundations of the Polystream services.
//!
//! Every service reads its settings through [`config`], so a bad value is
//! reported the same way everywhere: the variable's name and what is wrong.
//! [`events`] is the contract between them on Kafka.

pub mod config;
pub mod events;
