//! `ReadOutput`: a succeeded job's `mr-out-Y` files streamed to the client in partition
//! order, as chunks of whole lines, so that a user reads results without the data folder.
//!
//! The files are read on a spawned task into a small channel (two chunks ahead): a slow
//! client holds at most that much of the coordinator's memory, and a client that goes away
//! ends the reading.

use crate::error::status;
use mr_proto::v1 as pb;
use mr_storage::Storage;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::AsyncReadExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// Most bytes of one chunk (more only for a single longer line).
pub const CHUNK_BYTES: usize = 64 << 10;

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

/// Streams `files` (each an absolute path and the data-relative name the client sees,
/// which is also its key on S3 storage).
pub fn stream(files: Vec<(PathBuf, String)>, store: Storage) -> OutputStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        for (path, name) in files {
            let sent = match &store {
                Storage::Local => match tokio::fs::File::open(&path).await {
                    Ok(file) => send_file(file, &name, &tx).await,
                    Err(e) => Err(e.to_string()),
                },
                // The object whole (one GET; outputs are one reduce partition each),
                // then the same chunks of whole lines.
                Storage::S3(s3) => {
                    let (s3, key) = (s3.clone(), name.clone());
                    match tokio::task::spawn_blocking(move || s3.get(&key)).await {
                        Ok(Ok(bytes)) => send_file(&bytes[..], &name, &tx).await,
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            if let Err(error) = sent {
                tracing::warn!(file = %name, %error, "reading an output failed");
                let _ = tx
                    .send(Err(status(
                        Code::Internal,
                        format!("reading {name}: {error}"),
                    )))
                    .await;
                return;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Sends one file as chunks that end at a line's end; a last line without a newline goes
/// as it is.
async fn send_file(
    mut file: impl tokio::io::AsyncRead + Unpin,
    name: &str,
    tx: &tokio::sync::mpsc::Sender<Result<pb::OutputChunk, Status>>,
) -> Result<(), String> {
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        // Fill up to one chunk; past it only while a single line is longer than that.
        let room = match CHUNK_BYTES - pending.len().min(CHUNK_BYTES) {
            0 => CHUNK_BYTES,
            room => room,
        };
        let n = file
            .read(&mut buf[..room])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        if pending.len() < CHUNK_BYTES {
            continue;
        }
        // Everything up to the last newline goes; the rest waits for its line's end.
        let Some(cut) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let rest = pending.split_off(cut + 1);
        let data = std::mem::replace(&mut pending, rest);
        if tx.send(Ok(chunk(name, data))).await.is_err() {
            return Ok(());
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(Ok(chunk(name, pending))).await;
    }
    Ok(())
}

fn chunk(name: &str, data: Vec<u8>) -> pb::OutputChunk {
    pb::OutputChunk {
        file: name.to_string(),
        data,
    }
}
