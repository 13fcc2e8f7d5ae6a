//! Acknowledgements of Kafka writes, counted per batch.
//!
//! Every record a pipeline produces (outputs and dead letters alike) is
//! handed to librdkafka with an [`Acks`] as its delivery opaque. librdkafka
//! calls the producer context's `delivery` once per record, on its polling
//! thread; that only counts down. Whoever waits is woken once, when the
//! last write of the batch is acknowledged. No future, channel or box is
//! made per record: one `Arc<Acks>` serves a whole batch.
//!
//! Promise: [`Acks::wait`] resolves only after [`Acks::seal`] was called
//! and every write counted with [`Acks::expect`] was acknowledged or
//! failed. It resolves with the first delivery error, if any: a write that
//! failed is never reported as done.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rdkafka::error::KafkaError;
use tokio::sync::Notify;

/// The writes of one batch still waiting for the broker.
#[derive(Debug)]
pub struct Acks {
    /// Writes not yet acknowledged, plus one until the batch is sealed.
    pending: AtomicUsize,
    /// The first delivery error of the batch.
    failed: Mutex<Option<KafkaError>>,
    done: Notify,
}

impl Acks {
    /// An open batch with nothing written yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Acks {
            pending: AtomicUsize::new(1),
            failed: Mutex::new(None),
            done: Notify::new(),
        })
    }

    /// Count one more write; call before handing it to the producer.
    pub fn expect(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// A write counted with [`Acks::expect`] was not enqueued after all.
    pub fn cancel(&self) {
        self.count_down();
    }

    /// No more writes will be added to this batch.
    pub fn seal(&self) {
        self.count_down();
    }

    /// The broker acknowledged one write (or it failed for good).
    pub fn delivered(&self, result: Result<(), &KafkaError>) {
        if let Err(e) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.get_or_insert_with(|| e.clone());
        }
        self.count_down();
    }

    fn count_down(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            // `notify_one` keeps a permit when nobody waits yet, so a
            // waiter that arrives later is not missed.
            self.done.notify_one();
        }
    }

    /// Whether every write of the sealed batch is settled.
    pub fn settled(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Wait until the sealed batch is settled; the first delivery error,
    /// if any write failed.
    pub async fn wait(&self) -> Result<(), KafkaError> {
        while !self.settled() {
            self.done.notified().await;
        }
        match self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[tokio::test]
    async fn resolves_after_seal_and_every_delivery() {
        let acks = Acks::new();
        acks.expect();
        acks.expect();
        acks.delivered(Ok(()));
        assert!(!acks.settled());
        acks.seal();
        assert!(!acks.settled());
        let waiter = tokio::spawn({
            let acks = acks.clone();
            async move { acks.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        acks.delivered(Ok(()));
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_empty_sealed_batch_is_settled_and_a_failure_is_reported() {
        let acks = Acks::new();
        acks.seal();
        assert!(acks.wait().await.is_ok());

        let acks = Acks::new();
        acks.expect();
        acks.expect();
        acks.cancel();
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        acks.delivered(Err(&e));
        acks.seal();
        assert!(matches!(
            acks.wait().await,
            Err(KafkaError::MessageProduction(_))
        ));
    }
}
