//! sluice: a stream processor that hosts WebAssembly plugins.
//!
//! The host owns everything that touches the outside world — Kafka
//! consumption and production, offset commits, database writes, outbound
//! HTTP — and runs the per-record logic in sandboxed WebAssembly components
//! that implement the `sluice:plugin` WIT world.
//!
//! Data flows `source → plugin stages → sinks`, a batch of records at
//! every hand-off:
//! - [`source`]: the Kafka consumer, per-partition offset tracking (the one
//!   rule for when an offset may be committed: `source::offsets`), and the
//!   SQL source;
//! - [`record`]: a record in flight and its batches, neutral ground between
//!   source, stages and sinks;
//! - [`plugin`]: the wasmtime engine, component cache, limits and instances
//!   (`sluice:plugin@0.2.0` with `process-batch`, and 0.1.0);
//! - [`pipeline`]: stages (worker threads owning plugin instances) and the
//!   loop that ties consume, process, produce and commit together;
//! - [`sink`]: the Kafka producer (acknowledged per batch), the SQL sink
//!   (exactly-once into a database) and the dead-letter route;
//! - [`swap`]: hot swap of plugin versions, the file watcher and the admin
//!   API;
//! - [`config`]: the pipeline file; [`metrics`]: Prometheus metrics;
//! - [`commands`], [`cli`]: the `sluice` command line.
//!
//! The delivery guarantee is at-least-once: an offset is committed only
//! after every output of its record, and of every earlier record of its
//! partition, is acknowledged.

pub mod cli;
pub mod commands;
pub mod config;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod record;
pub mod sink;
pub mod source;
pub mod swap;
