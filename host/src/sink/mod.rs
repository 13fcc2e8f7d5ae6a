//! Sinks: where outputs go.
//!
//! When an offset may be committed: a sink finishes a record (which lets
//! its partition tracker release the offset) only after every write for
//! that record is acknowledged: every Kafka delivery report is a success,
//! the SQL transaction holding its rows committed, and the dead-letter
//! writes for it are acknowledged. See [`router`].

pub mod acks;
pub mod dead_letter;
pub mod kafka;
pub mod router;
pub mod sql;
