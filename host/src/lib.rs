//! sluice: a stream processor that hosts WebAssembly plugins.
//!
//! The host owns everything that touches the outside world — Kafka
//! consumption and production, offset commits, database writes, outbound
//! HTTP — and runs the per-record logic in sandboxed WebAssembly components
//! that implement the `sluice:plugin` WIT world.
//!
//! Data flows `source → plugin stages → sinks`:
//! - [`source`]: the Kafka consumer and per-partition offset tracking;
//! - [`plugin`]: the wasmtime engine, component cache, limits and instances;
//! - [`pipeline`]: stages (worker threads owning plugin instances) and the
//!   loop that ties consume, process, produce and commit together;
//! - [`sink`]: the Kafka producer and the dead-letter route;
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
pub mod sink;
pub mod source;
pub mod swap;
