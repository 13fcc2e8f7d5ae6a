//! The unit that flows through a pipeline: one source record, the outputs it
//! has produced so far, and the handle that finishes its offset. Records
//! travel in [`Batch`]es: every hand-off (intake → stage → stage → sink)
//! moves a batch, never a single record.
//!
//! Neutral ground: the source makes records, stages and sinks fill them in,
//! and the source finishes them (`source::kafka::finish`). Nothing here
//! decides when an offset may be committed; `source::offsets` does.
//!
//! The record is kept as the plugin [`Input`], which cannot say null (WIT
//! `list<u8>`): a null value (a tombstone) or null header value is empty
//! there, and [`Nulls`] beside it remembers which parts were null so that a
//! dead letter can carry the record unchanged, and so that a pipeline
//! without plugins forwards a tombstone as a tombstone
//! ([`Work::output_nulls`]).

use std::sync::Arc;

use smallvec::SmallVec;
use tokio::sync::OwnedSemaphorePermit;

use crate::plugin::{Input, Output, PluginError};
use crate::source::offsets::PartitionTracker;

/// Why a record went to the dead-letter topic: the `sluice.error.kind`
/// header's value and the `kind` label of the dead-letter counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The plugin rejected the record as malformed (`process-error::invalid`).
    Invalid,
    /// The plugin failed for now (`process-error::transient`) and retries ran out.
    Transient,
    /// The plugin ran past its deadline.
    Deadline,
    /// The plugin reached its memory limit.
    Memory,
    /// The plugin's outputs exceeded the output limit.
    OutputLimit,
    /// The plugin trapped (a panic, an unreachable).
    Trap,
    /// An output named a route the pipeline does not define.
    Route,
    /// The broker refused an output (too large, say).
    Produce,
    /// The database refused a row.
    Sql,
    /// The plugin routed the output to the dead-letter topic itself.
    Routed,
}

impl FailureKind {
    /// The stable name, as written in headers, metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::Transient => "transient",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::OutputLimit => "output-limit",
            FailureKind::Trap => "trap",
            FailureKind::Route => "route",
            FailureKind::Produce => "produce",
            FailureKind::Sql => "sql",
            FailureKind::Routed => "routed",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FailureKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a record is headed for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The plugin that rejected it ("sluice" for host-side rejections).
    pub plugin: Arc<str>,
    /// That plugin's content hash ("" for host-side rejections).
    pub hash: Arc<str>,
    /// Which kind of failure (the `sluice.error.kind` header).
    pub kind: FailureKind,
    /// What went wrong, for people (the `sluice.error.message` header).
    pub message: String,
}

impl Failure {
    /// A failure of the plugin version `plugin` with content hash `hash`, kind
    /// and message taken from `e`.
    pub fn from_plugin(plugin: Arc<str>, hash: Arc<str>, e: &PluginError) -> Self {
        Failure {
            plugin,
            hash,
            kind: e.kind(),
            message: e.message(),
        }
    }

    /// A failure found by the host rather than a plugin (a bad route, a refused
    /// output or row), attributed to plugin "sluice" with an empty hash.
    pub fn host(kind: FailureKind, message: String) -> Self {
        Failure {
            plugin: "sluice".into(),
            hash: "".into(),
            kind,
            message,
        }
    }
}

/// What becomes of a record. It starts as [`Fate::Pass`]; a stage or sink
/// may send it to the dead-letter topic or abandon it, never back.
/// Whether a fate lets the record's offset be committed is decided in one
/// place, `source::offsets`.
#[derive(Debug, Default)]
pub enum Fate {
    /// Its outputs are written.
    #[default]
    Pass,
    /// It goes to the dead-letter topic instead of its outputs.
    DeadLetter {
        /// Why: what its dead letter's error headers say.
        failure: Failure,
        /// Why the broker refused its dead letter (asynchronously): it is
        /// sent again without its value (see `sink::dead_letter`).
        refused: Option<String>,
    },
    /// Shutdown or a lost partition interrupted it: it is neither written
    /// nor finished, so its offset is never committed and it is read again.
    Abandoned,
}

/// Which parts of a source record were null, where its [`Input`] holds
/// them as empty. Allocates nothing unless a header value was null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nulls {
    /// The value was null: the record is a tombstone (a Kafka delete).
    pub value: bool,
    /// Indexes into the record's headers, ascending, of those whose value
    /// was null.
    pub headers: Vec<usize>,
}

/// Nothing was null.
static NO_NULLS: Nulls = Nulls {
    value: false,
    headers: Vec::new(),
};

impl Nulls {
    /// Header `i`'s value was null.
    pub fn header(&self, i: usize) -> bool {
        self.headers.binary_search(&i).is_ok()
    }
}

/// One source record in flight.
pub struct Work {
    /// The record as read from the source, null parts as empty.
    pub record: Input,
    /// Which parts of `record` were null at the source.
    pub nulls: Nulls,
    /// Default-route outputs of the previous stage, waiting for this stage.
    pub pending: Vec<Input>,
    /// Outputs that left the chain, with their route (`None` = default).
    pub routed: Vec<Output>,
    /// Written, dead-lettered or abandoned.
    pub fate: Fate,
    /// `name@sha256` of each plugin version that processed the record, in
    /// chain order: the provenance header of its outputs and dead letters.
    pub versions: SmallVec<[Arc<str>; 2]>,
    /// The tracker of the partition assignment the record was read under, which
    /// finishes its offset.
    pub tracker: Arc<PartitionTracker>,
    /// Held until the record finishes: bounds records in flight per
    /// partition. Consecutive records of one partition in a batch share
    /// one permit (merged into the first, the others hold `None`), so a
    /// batch returns its permits at once.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Records handed on together, each partition's in offset order.
pub type Batch = Vec<Work>;

/// Whether two records belong to the same partition assignment: split a
/// batch into runs of one partition's records with
/// `batch.chunk_by(same_partition)`.
pub fn same_partition(a: &Work, b: &Work) -> bool {
    Arc::ptr_eq(&a.tracker, &b.tracker)
}

impl Work {
    /// A record just read: headed for its outputs, not yet processed by any
    /// plugin.
    pub fn new(
        record: Input,
        nulls: Nulls,
        tracker: Arc<PartitionTracker>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Work {
            record,
            nulls,
            pending: Vec::new(),
            routed: Vec::new(),
            fate: Fate::Pass,
            versions: SmallVec::new(),
            tracker,
            permit,
        }
    }

    /// Whether the record is still headed for its outputs.
    pub fn passes(&self) -> bool {
        matches!(self.fate, Fate::Pass)
    }

    /// Send the record to the dead-letter topic instead of its outputs.
    pub fn dead_letter(&mut self, failure: Failure) {
        self.fate = Fate::DeadLetter {
            failure,
            refused: None,
        };
    }

    /// The provenance header's value: the versions that processed the
    /// record, comma-separated (`None` when no plugin did). Allocates only
    /// for chains of two or more plugins.
    pub fn provenance(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self.versions.as_slice() {
            [] => None,
            [one] => Some(std::borrow::Cow::Borrowed(one)),
            many => Some(std::borrow::Cow::Owned(many.join(","))),
        }
    }

    /// Which parts of the record's outputs are null. Without plugins the
    /// one output is the source record as read, so its nulls; a plugin's
    /// outputs are never null (WIT `sluice:plugin@0.1.0` cannot say so).
    pub fn output_nulls(&self) -> &Nulls {
        if self.versions.is_empty() {
            &self.nulls
        } else {
            &NO_NULLS
        }
    }

    /// An output of a plugin, turned into the input of the next plugin. It
    /// keeps the source record's coordinates.
    pub fn chained_input(&self, o: Output) -> Input {
        Input {
            topic: self.record.topic.clone(),
            partition: self.record.partition,
            offset: self.record.offset,
            timestamp: self.record.timestamp,
            key: o.key,
            value: o.value,
            headers: o.headers,
        }
    }
}
