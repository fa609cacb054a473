//! Answering a list request: the walk of the volume, sent in bounded `Entries` batches.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::limits::{Limits, ServeStats};
use crate::excludes::Excludes;
use crate::filelist::{Entry, WalkOptions, walk};
use crate::protocol::{FrameWriter, Message, ProtocolError};

/// Most entries in one `Entries` frame.
const LIST_BATCH: usize = 512;

/// Approximate bytes in one `Entries` frame (well under the frame limit).
const LIST_BATCH_BYTES: usize = 1 << 20;

/// What a list request asked for.
pub(super) struct ListOptions {
    pub(super) excludes: Vec<String>,
    pub(super) hash_percent: u8,
    pub(super) xattrs: bool,
}

/// Approximate encoded size of an entry, to bound the bytes of one `Entries` frame.
fn entry_weight(e: &Entry) -> usize {
    96 + e.path.as_bytes().len()
        + e.link_target.len()
        + e.xattrs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
}

/// Walks the volume on a blocking thread and sends its entries in batches, then the count.
pub(super) async fn send_list<W: tokio::io::AsyncWrite + Unpin>(
    root: &Arc<OwnedFd>,
    list: ListOptions,
    limits: &Limits,
    writer: &mut FrameWriter<W>,
    stats: &mut ServeStats,
) -> Result<(), ProtocolError> {
    let ListOptions {
        excludes,
        hash_percent,
        xattrs,
    } = list;
    if excludes.len() > limits.max_excludes || excludes.iter().any(|e| e.len() > limits.max_path) {
        return Err(ProtocolError::Limit(
            "too many or too long exclude patterns".into(),
        ));
    }
    let excludes = Excludes::new(&excludes).map_err(|e| ProtocolError::malformed(e.to_string()))?;
    let opts = WalkOptions {
        excludes,
        hash_percent,
        xattrs,
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Entry>>(4);
    let root = Arc::clone(root);
    let walker = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(LIST_BATCH);
        let mut bytes = 0;
        let n = walk(&root, &opts, |e| {
            bytes += entry_weight(&e);
            batch.push(e);
            if batch.len() >= LIST_BATCH || bytes >= LIST_BATCH_BYTES {
                bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
                tx.blocking_send(full)
                    .map_err(|_| io::Error::other("list receiver gone"))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch)
                .map_err(|_| io::Error::other("list receiver gone"))?;
        }
        Ok::<u64, io::Error>(n)
    });
    while let Some(batch) = rx.recv().await {
        writer.send(&Message::Entries(batch)).await?;
    }
    let count = walker
        .await
        .map_err(|e| ProtocolError::malformed(format!("walker panicked: {e}")))?
        .map_err(|source| ProtocolError::Fs {
            context: "walking the volume".into(),
            source,
        })?;
    stats.entries_listed += count;
    writer.send(&Message::ListEnd { count }).await
}
