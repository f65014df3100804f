//! Linearizable reads: one raft ReadIndex serves every reader that arrived
//! while the previous one was in flight; each reader proceeds once the
//! applied index reaches the read index (etcd: `linearizableReadLoop`).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::raft::RaftHandle;

/// Handle for waiting on a linearizable read barrier.
#[derive(Clone)]
pub struct ReadBarrier {
    tx: mpsc::UnboundedSender<oneshot::Sender<Result<()>>>,
}

impl ReadBarrier {
    /// Starts the read loop task.
    pub fn spawn(raft: RaftHandle, applied: watch::Receiver<u64>, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(rx, raft, applied, timeout));
        ReadBarrier { tx }
    }

    /// Returns once every write acknowledged before the call is visible to a
    /// local read.
    pub async fn wait(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

async fn read_loop(
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<Result<()>>>,
    raft: RaftHandle,
    mut applied: watch::Receiver<u64>,
    timeout: Duration,
) {
    let mut waiters = Vec::new();
    while rx.recv_many(&mut waiters, usize::MAX).await > 0 {
        let result = barrier(&raft, &mut applied, timeout).await;
        for w in waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }
}

async fn barrier(
    raft: &RaftHandle,
    applied: &mut watch::Receiver<u64>,
    timeout: Duration,
) -> Result<()> {
    let work = async {
        let index = raft.read_index()?.await.map_err(|_| Error::Stopped)?;
        applied
            .wait_for(|a| *a >= index)
            .await
            .map_err(|_| Error::Stopped)?;
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(Error::Timeout))
}
