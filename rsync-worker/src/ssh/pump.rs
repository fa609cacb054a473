//! Keeps reading an SSH channel while its consumer is busy writing.
//!
//! russh delivers incoming channel data through a bounded per-channel queue counted in
//! messages, and when that queue is full the whole session loop waits, including the
//! outgoing data and window adjustments of every channel. A protocol side that stops
//! reading while it writes (both ends of our pipelined protocol do, briefly) could then
//! deadlock the connection after a few hundred small packets. The pump drains the channel
//! into a buffer bounded in bytes instead: backpressure still reaches the peer, but only
//! after [`super::tuning::PUMP_BUFFER`] bytes are waiting, far more than the protocol ever
//! leaves unread in the reverse direction.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
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
    budget: Arc<Semaphore>,
    write: WriteHalf<S>,
    task: JoinHandle<()>,
}

/// Starts pumping `stream`'s read side; at most `max_buffered` bytes wait unread.
pub fn pump<S>(stream: S, max_buffered: usize) -> PumpedStream<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let budget = Arc::new(Semaphore::new(max_buffered.max(CHUNK)));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(pump_task(read, tx, budget.clone()));
    PumpedStream {
        rx,
        current: Vec::new(),
        pos: 0,
        budget,
        write,
        task,
    }
}

async fn pump_task<S: AsyncRead>(
    mut read: ReadHalf<S>,
    tx: mpsc::UnboundedSender<io::Result<Vec<u8>>>,
    budget: Arc<Semaphore>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match read.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let Ok(permits) = budget.acquire_many(n as u32).await else {
                    return;
                };
                permits.forget();
                if tx.send(Ok(buf[..n].to_vec())).is_err() {
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
        this.budget.add_permits(n);
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
