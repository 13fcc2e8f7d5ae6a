//! sluice: a stream processor that hosts WebAssembly plugins.
//!
//! The host owns everything that touches the outside world — Kafka
//! consumption and production, offset commits, database writes, outbound
//! HTTP — and runs the per-record logic in sandboxed WebAssembly components
//! that implement the `sluice:plugin` WIT world.
//!
//! A record's way through a pipeline, a batch at every hand-off:
//!
//! ```text
//!  Kafka ─▶ source::kafka ─▶ pipeline::intake ─▶ pipeline::stage ─▶ … ─▶ sink::router ─┬▶ sink::kafka (topics)
//!          (message → record)  (batches, back-   (a plugin on worker   (one per plugin) ├▶ sink::sql (tables)
//!                              pressure, EO claim) threads)                             └▶ sink::dead_letter
//!           ◀── source::kafka::finish ◀── every write of the batch acknowledged (sink::acks) ──┘
//!              (source::offsets says which offsets may now be committed)
//! ```
//!
//! The map:
//! - [`record`]: a record in flight ([`record::Work`]), its [`record::Fate`]
//!   (written, dead-lettered, abandoned) and its batches. Neutral ground
//!   between source, stages and sinks.
//! - [`source`]: where records come from. [`source::kafka`] turns messages
//!   into records and stores offsets; [`source::offsets`] is the one place
//!   that says when an offset may be committed, to Kafka (at-least-once) or
//!   to a database's offsets table (exactly-once); [`source::sql`] polls a
//!   database query into a topic (the crawler example's producer side).
//! - [`pipeline`]: the runtime that ties consume, process, produce and
//!   commit together: [`pipeline::intake`] (the consume loop) and
//!   [`pipeline::stage`] (worker threads, each owning a plugin instance;
//!   retries, deadlines, batch replay after a trap).
//! - [`plugin`]: the wasmtime engine, the compiled-component cache, the
//!   `sluice:plugin` bindings (0.2.0 with `process-batch`, and 0.1.0),
//!   resource limits, and what a plugin can reach: its log, its clocks and
//!   outbound HTTP through an allow-list ([`plugin::http`]).
//! - [`sink`]: where outputs go: Kafka topics ([`sink::kafka`],
//!   acknowledged per batch by [`sink::acks`]), database tables with
//!   exactly-once offsets ([`sink::sql`]), the dead-letter topic
//!   ([`sink::dead_letter`]), and the [`sink::router`] that sends each
//!   output to its route.
//! - [`swap`]: hot swap: new plugin versions (file watcher, pipeline-file
//!   reload, the admin API) replace running ones between batches, after
//!   their smoke records pass.
//! - [`config`]: the pipeline file's types; `docs/config.md` is generated
//!   from their docs.
//! - [`metrics`]: every Prometheus metric, defined once.
//! - [`cli`], [`commands`]: the `sluice` command line (`run`, `check`,
//!   `plugin run|inspect|new`, `produce`, `consume`).
//!
//! The delivery guarantee is at-least-once: an offset is committed only
//! after every output of its record, and of every earlier record of its
//! partition, is acknowledged. With a SQL sink in exactly-once mode, rows
//! and offsets commit in one database transaction. `docs/delivery.md`
//! lists the faults each guarantee is tested under.

#![warn(missing_docs)]

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
