//! Keeps reading a stream while its consumer is busy, into a buffer bounded in bytes.
//!
//! Two places in the SSH transport need this:
//!
//! - **Channels.** russh delivers incoming channel data through a bounded per-channel queue
//!   counted in messages, and when that queue is full the whole session loop waits,
//!   including the outgoing data and window adjustments of every channel. A protocol side
//!   that stops reading while it writes (both ends of our pipelined protocol do, briefly)
//!   could then deadlock the connection after a few hundred small packets. The pump drains
//!   the channel into a buffer bounded in bytes instead: backpressure still reaches the peer,
//!   but only after [`super::tuning::PUMP_BUFFER`] bytes are waiting, far more than the
//!   protocol ever leaves unread in the reverse direction.
//! - **The TCP socket under the session** (russh 0.65, see [`super::tuning::READ_AHEAD_BASE`]).
//!   russh's session loop is one task that alternates between handling one incoming packet
//!   and writing *all* its queued output with `write_all`; while it writes it does not read
//!   the socket. When both ends queue more output than the kernel buffers between them hold
//!   (4 channels echoing both ways at once were enough on loopback), both loops wait in
//!   `write_all` for a peer that is itself waiting in `write_all`, and the connection is
//!   dead until the idle timeout. Pumping the socket keeps draining the kernel's receive
//!   queue whatever the session loop is doing, so the peer's writes always complete and its
//!   loop returns to reading ours. The bound of this pump grows by
//!   [`super::tuning::READ_AHEAD_PER_CHANNEL`] per open channel ([`PumpCapacity::grant`]):
//!   a compliant peer never has more unparsed data in flight than the windows we granted, so
//!   it can never fill it, while a peer that ignores flow control only meets TCP
//!   backpressure. Memory stays bounded either way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Read size of the pump task.
const CHUNK: usize = 64 * 1024;

/// A stream whose read side is drained by a background task into a byte-bounded buffer;
/// writes go straight to the underlying stream.
pub struct PumpedStream<S> {
    rx: mpsc::UnboundedReceiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    budget: Arc<Budget>,
    write: WriteHalf<S>,
    task: JoinHandle<()>,
    /// Capacity this stream holds in another pump (a channel's share of its socket's
    /// read-ahead), given back when the stream is dropped.
    _grant: Option<CapacityGrant>,
}

/// Starts pumping `stream`'s read side; at most `max_buffered` bytes wait unread (at least
/// one read chunk, 64 KiB), plus whatever is later granted through [`PumpedStream::capacity`].
pub fn pump<S>(stream: S, max_buffered: usize) -> PumpedStream<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let budget = Arc::new(Budget {
        free: Semaphore::new(max_buffered.max(CHUNK)),
        debt: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(pump_task(read, tx, budget.clone()));
    PumpedStream {
        rx,
        current: Vec::new(),
        pos: 0,
        budget,
        write,
        task,
        _grant: None,
    }
}

impl<S> PumpedStream<S> {
    /// A handle that raises or lowers this pump's bound while it runs.
    pub fn capacity(&self) -> PumpCapacity {
        PumpCapacity(self.budget.clone())
    }

    /// Keeps `grant` (capacity in another pump) alive as long as this stream.
    pub fn holding(mut self, grant: CapacityGrant) -> Self {
        self._grant = Some(grant);
        self
    }
}

/// Free space of a pump's buffer. Invariant: `free + buffered - debt = bound`, where
/// `buffered` counts bytes read by the pump task and not yet read by the consumer. A lowered
/// bound that cannot take its bytes from `free` (they are buffered) records them as `debt`,
/// paid from the consumer's reads before any space is handed back to the pump task.
struct Budget {
    free: Semaphore,
    debt: AtomicUsize,
}

impl Budget {
    /// `n` bytes of space come back (consumer read them, or the bound was raised).
    fn release(&self, n: usize) {
        let mut debt = self.debt.load(Ordering::Acquire);
        let mut rest = n;
        while debt > 0 && rest > 0 {
            let pay = debt.min(rest);
            match self.debt.compare_exchange_weak(
                debt,
                debt - pay,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    rest -= pay;
                    break;
                }
                Err(now) => debt = now,
            }
        }
        if rest > 0 {
            self.free.add_permits(rest);
        }
    }

    /// Lowers the bound by `n` bytes.
    fn shrink(&self, n: usize) {
        let taken = self.free.forget_permits(n);
        if taken < n {
            self.debt.fetch_add(n - taken, Ordering::AcqRel);
        }
    }
}

/// Changes the bound of a running pump.
#[derive(Clone)]
pub struct PumpCapacity(Arc<Budget>);

impl PumpCapacity {
    /// Raises the bound by `bytes` until the returned grant is dropped.
    pub fn grant(&self, bytes: usize) -> CapacityGrant {
        self.0.release(bytes);
        CapacityGrant {
            budget: self.0.clone(),
            bytes,
        }
    }
}

/// Extra room in a pump, taken back on drop (see [`PumpCapacity::grant`]).
pub struct CapacityGrant {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for CapacityGrant {
    fn drop(&mut self) {
        self.budget.shrink(self.bytes);
    }
}

async fn pump_task<S: AsyncRead>(
    mut read: ReadHalf<S>,
    tx: mpsc::UnboundedSender<io::Result<Vec<u8>>>,
    budget: Arc<Budget>,
) {
    loop {
        // Take room before reading (at least one byte, at most a chunk), so that a full
        // buffer leaves the data in the peer's hands (backpressure), not in ours.
        let Ok(mut room) = budget.free.acquire().await else {
            return;
        };
        let more = budget.free.available_permits().min(CHUNK - 1) as u32;
        if let Ok(extra) = budget.free.try_acquire_many(more) {
            room.merge(extra);
        }
        let room_len = room.num_permits();
        // a fresh buffer per read is handed over as is: no copy of the data
        let mut buf = Vec::with_capacity(room_len);
        match (&mut read).take(room_len as u64).read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                // The n bytes now buffered keep their permits; the rest of the room goes
                // back (paying any debt first, as for a consumer read).
                room.forget();
                budget.release(room_len - n);
                // a few bytes must not pin a whole chunk of memory (the bound counts bytes)
                if buf.capacity() > 4 * n {
                    buf.shrink_to_fit();
                }
                if tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

impl<S> AsyncRead for PumpedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.current.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => {
                    this.current = chunk;
                    this.pos = 0;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = out.remaining().min(this.current.len() - this.pos);
        out.put_slice(&this.current[this.pos..this.pos + n]);
        this.pos += n;
        this.budget.release(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for PumpedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

impl<S> Drop for PumpedStream<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    fn budget(free: usize) -> Budget {
        Budget {
            free: Semaphore::new(free),
            debt: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes of room as the pump task does for data it buffered.
    fn buffer(b: &Budget, n: usize) {
        b.free.try_acquire_many(n as u32).unwrap().forget();
    }

    #[test]
    fn a_lowered_bound_is_paid_from_reads_before_the_pump_gets_room_again() {
        let b = budget(100);
        buffer(&b, 80); // 80 buffered, 20 free
        b.release(50); // bound 150 (a grant): 70 free
        assert_eq!(b.free.available_permits(), 70);
        b.shrink(50); // bound back to 100: 20 free
        assert_eq!(b.free.available_permits(), 20);
        b.shrink(60); // bound 40 with 80 buffered: 0 free, 40 owed
        assert_eq!(b.free.available_permits(), 0);
        assert_eq!(b.debt.load(Ordering::Acquire), 40);
        b.release(30); // the consumer read 30: 50 buffered, still over the bound
        assert_eq!(b.free.available_permits(), 0);
        b.release(30); // read 30 more: 20 buffered, bound 40
        assert_eq!(b.free.available_permits(), 20);
        assert_eq!(b.debt.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_grant_lets_the_pump_hold_more_unread_bytes_until_dropped() {
        // The consumer never reads: writes complete only while the pump has room.
        let (mut peer, ours) = tokio::io::duplex(4 * 1024);
        let pumped = pump(ours, CHUNK);
        let base = vec![7u8; CHUNK];
        let within = async {
            peer.write_all(&base).await.unwrap();
            let grant = pumped.capacity().grant(4 * CHUNK);
            peer.write_all(&vec![8u8; 4 * CHUNK]).await.unwrap();
            grant
        };
        let grant = tokio::time::timeout(Duration::from_secs(20), within)
            .await
            .expect("the pump must absorb its bound and its grant without a reader");
        drop(grant);
        assert_eq!(pumped.budget.free.available_permits(), 0);
        let mut pumped = pumped;
        let mut all = Vec::new();
        drop(peer);
        pumped.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 5 * CHUNK);
        assert!(all[..CHUNK].iter().all(|&b| b == 7) && all[CHUNK..].iter().all(|&b| b == 8));
        // Everything read: the bound is back to its base, nothing owed.
        assert_eq!(pumped.budget.free.available_permits(), CHUNK);
        assert_eq!(pumped.budget.debt.load(Ordering::Acquire), 0);
    }
}
