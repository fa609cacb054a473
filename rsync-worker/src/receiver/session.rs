//! One stream of a pull, from the receiver's end ([`Conn`]): the hello, the file list
//! request, and the goodbye that reports the stream's byte count.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

use super::error::{ReceiveError, unexpected};
use crate::filelist::Entry;
use crate::options::SyncOptions;
use crate::protocol::{FrameReader, FrameWriter, MAX_FRAME, Message, ProtocolError, VERSION};

/// One open stream, after the hello.
pub(super) struct Conn<S> {
    /// Frames from the sender.
    pub(super) reader: FrameReader<ReadHalf<S>>,
    /// Frames to the sender (buffered: requests are flushed when none are waiting).
    pub(super) writer: FrameWriter<tokio::io::BufWriter<WriteHalf<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn<S> {
    /// Splits `stream`, says hello for `volume` and checks the version of the answer.
    pub(super) async fn open(
        stream: S,
        volume: &str,
        opts: &SyncOptions,
    ) -> Result<Self, ReceiveError> {
        let (rd, wr) = tokio::io::split(stream);
        let mut c = Conn {
            reader: FrameReader::new(rd, MAX_FRAME),
            writer: FrameWriter::new(tokio::io::BufWriter::with_capacity(64 * 1024, wr), 0),
        };
        let level = if opts.compress {
            opts.compress_level.max(1)
        } else {
            0
        };
        c.writer
            .send(&Message::Hello {
                version: VERSION,
                volume: volume.to_string(),
                compress_level: level,
            })
            .await?;
        c.writer.flush().await?;
        match c.reader.read().await? {
            Message::HelloOk { version } if version == VERSION => Ok(c),
            Message::HelloOk { version } => Err(ProtocolError::Version {
                ours: VERSION,
                theirs: version,
            }
            .into()),
            other => Err(unexpected("HelloOk", &other)),
        }
    }

    /// Asks for the file list (excludes, hashes, xattrs as `opts` say) and collects it.
    pub(super) async fn list(&mut self, opts: &SyncOptions) -> Result<Vec<Entry>, ReceiveError> {
        self.writer
            .send(&Message::ListRequest {
                excludes: opts.excludes.clone(),
                hash_percent: if opts.checksum {
                    100
                } else {
                    opts.verify_sample_percent.min(100)
                },
                xattrs: opts.xattrs,
            })
            .await?;
        self.writer.flush().await?;
        let mut entries = Vec::new();
        loop {
            match self.reader.read().await? {
                Message::Entries(batch) => entries.extend(batch),
                Message::ListEnd { count } if count == entries.len() as u64 => return Ok(entries),
                Message::ListEnd { .. } => {
                    return Err(ProtocolError::malformed("list count mismatch").into());
                }
                other => return Err(unexpected("Entries", &other)),
            }
        }
    }

    /// Says goodbye; returns the bytes this stream read and wrote.
    pub(super) async fn bye(mut self) -> u64 {
        let _ = self.writer.send(&Message::Bye).await;
        let _ = self.writer.flush().await;
        self.reader.bytes + self.writer.bytes
    }
}
