//! Sources: where records come from.
//!
//! When an offset may be committed: see [`offsets`]. The Kafka source never
//! stores an offset itself; it only reports reads to the partition's
//! tracker, and the sink stores offsets as records finish.

pub mod kafka;
pub mod offsets;
pub mod quiet;
pub mod sql;
