//! Sinks: where outputs go.
//!
//! When an offset may be committed: a sink finishes a record (which lets
//! its partition tracker release the offset) only after every write for
//! that record is acknowledged: every Kafka delivery report is a success,
//! or the dead-letter write for it is.

pub mod dead_letter;
pub mod kafka;
