//! The unit that flows through a pipeline: one source record, the outputs it
//! has produced so far, and the handle that finishes its offset.

use std::sync::Arc;

use smallvec::SmallVec;
use tokio::sync::OwnedSemaphorePermit;

use crate::plugin::{Input, Output, PluginError};
use crate::source::offsets::PartitionTracker;

/// Why a record is headed for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The plugin that rejected it ("sluice" for host-side rejections).
    pub plugin: Arc<str>,
    /// That plugin's content hash ("" for host-side rejections).
    pub hash: Arc<str>,
    /// Stable kind name: invalid, transient, deadline, memory, trap, route, produce.
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn from_plugin(plugin: Arc<str>, hash: Arc<str>, e: &PluginError) -> Self {
        Failure {
            plugin,
            hash,
            kind: e.kind(),
            message: e.message(),
        }
    }

    pub fn host(kind: &'static str, message: String) -> Self {
        Failure {
            plugin: "sluice".into(),
            hash: "".into(),
            kind,
            message,
        }
    }
}

/// One source record in flight.
pub struct Work {
    /// The record as read from the source.
    pub record: Input,
    /// Default-route outputs of the previous stage, waiting for this stage.
    pub pending: Vec<Input>,
    /// Outputs that left the chain, with their route (`None` = default).
    pub routed: Vec<Output>,
    /// Set when the record must be dead-lettered instead.
    pub failure: Option<Failure>,
    /// Set when shutdown interrupted the record: it is neither produced nor
    /// finished, so its offset is never committed and it is read again.
    pub abandoned: bool,
    /// `name@sha256` of each plugin version that processed the record, in
    /// chain order: the provenance header of its outputs and dead letters.
    pub versions: SmallVec<[Arc<str>; 2]>,
    pub tracker: Arc<PartitionTracker>,
    /// Held until the record finishes: bounds records in flight per partition.
    pub permit: OwnedSemaphorePermit,
}

impl Work {
    pub fn new(
        record: Input,
        tracker: Arc<PartitionTracker>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Work {
            record,
            pending: Vec::new(),
            routed: Vec::new(),
            failure: None,
            abandoned: false,
            versions: SmallVec::new(),
            tracker,
            permit,
        }
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
