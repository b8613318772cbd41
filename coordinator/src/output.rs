//! `ReadOutput`: a succeeded job's `mr-out-Y` files streamed to the client in partition
//! order, as chunks of whole lines, so that a user reads results without the data folder.
//!
//! The files are read on a spawned task into a small channel (two chunks ahead): a slow
//! client holds at most that much of the coordinator's memory, and a client that goes away
//! ends the reading. On S3 an output is read in ranged GETs of 1 MiB, one at a time, so an
//! output of any size costs about that much memory.

use crate::error::status;
use futures::StreamExt;
use mr_proto::v1 as pb;
use mr_storage::{S3Store, Storage};
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::AsyncReadExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// Most bytes of one chunk (more only for a single longer line).
pub const CHUNK_BYTES: usize = 64 << 10;

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

/// Bytes per ranged GET of an output object on S3.
const S3_BLOCK_BYTES: u64 = 1 << 20;

/// Streams `files` (each an absolute path and the data-relative name the client sees,
/// which is also its key on S3 storage).
pub fn stream(files: Vec<(PathBuf, String)>, store: Storage) -> OutputStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        for (path, name) in files {
            let sent = match &store {
                Storage::Local => match tokio::fs::File::open(&path).await {
                    Ok(file) => send_file(file_blocks(file), &name, &tx).await,
                    Err(e) => Err(e.to_string()),
                },
                // Ranged GETs of a block each, one at a time as the client takes them: an
                // output of any size holds about one block of the coordinator's memory.
                Storage::S3(s3) => {
                    send_file(object_blocks(s3.clone(), name.clone()), &name, &tx).await
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

/// A file's bytes, [`CHUNK_BYTES`] at a time.
fn file_blocks(file: tokio::fs::File) -> impl Stream<Item = Result<Vec<u8>, String>> {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut block = vec![0u8; CHUNK_BYTES];
        match file.read(&mut block).await {
            Ok(0) => None,
            Ok(n) => {
                block.truncate(n);
                Some((Ok(block), Some(file)))
            }
            Err(e) => Some((Err(e.to_string()), None)),
        }
    })
}

/// An object's bytes, [`S3_BLOCK_BYTES`] per ranged GET (its size from one HEAD first).
fn object_blocks(s3: S3Store, key: String) -> impl Stream<Item = Result<Vec<u8>, String>> {
    // (next offset, size once known); None after an error.
    futures::stream::unfold(Some((0u64, None)), move |at| {
        let (s3, key) = (s3.clone(), key.clone());
        async move {
            let (offset, size) = at?;
            let blocking = tokio::task::spawn_blocking(move || {
                let size = match size {
                    Some(size) => size,
                    None => s3.size(&key)?,
                };
                let end = offset.saturating_add(S3_BLOCK_BYTES).min(size);
                Ok::<_, mr_storage::StoreError>((s3.get_range(&key, offset..end)?, end, size))
            });
            match blocking.await {
                Ok(Ok((block, _, _))) if block.is_empty() => None,
                Ok(Ok((block, end, size))) => Some((Ok(block), Some((end, Some(size))))),
                Ok(Err(e)) => Some((Err(e.to_string()), None)),
                Err(e) => Some((Err(e.to_string()), None)),
            }
        }
    })
}

/// Sends one file's `blocks` as chunks of whole lines, each at most [`CHUNK_BYTES`] but
/// for a single longer line; a last line without a newline goes as it is.
async fn send_file(
    blocks: impl Stream<Item = Result<Vec<u8>, String>>,
    name: &str,
    tx: &tokio::sync::mpsc::Sender<Result<pb::OutputChunk, Status>>,
) -> Result<(), String> {
    let mut blocks = std::pin::pin!(blocks);
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
    // How far past CHUNK_BYTES a long line was already searched for its newline.
    let mut searched = CHUNK_BYTES;
    while let Some(block) = blocks.next().await {
        pending.extend_from_slice(&block?);
        while let Some(cut) = chunk_end(&pending, &mut searched) {
            let rest = pending.split_off(cut);
            let data = std::mem::replace(&mut pending, rest);
            searched = CHUNK_BYTES;
            if tx.send(Ok(chunk(name, data))).await.is_err() {
                return Ok(());
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(Ok(chunk(name, pending))).await;
    }
    Ok(())
}

/// Where the next chunk of `pending` ends, once it holds a full one: after the last newline
/// within [`CHUNK_BYTES`], or, when one line is longer than that, after that line's newline
/// (searched from `searched` on, so a long line is scanned once).
fn chunk_end(pending: &[u8], searched: &mut usize) -> Option<usize> {
    if pending.len() < CHUNK_BYTES {
        return None;
    }
    if let Some(at) = pending[..CHUNK_BYTES].iter().rposition(|&b| b == b'\n') {
        return Some(at + 1);
    }
    let from = (*searched).max(CHUNK_BYTES);
    match pending[from..].iter().position(|&b| b == b'\n') {
        Some(at) => Some(from + at + 1),
        None => {
            *searched = pending.len();
            None
        }
    }
}

fn chunk(name: &str, data: Vec<u8>) -> pb::OutputChunk {
    pb::OutputChunk {
        file: name.to_string(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `text` in blocks of `block` bytes; the chunks that arrive.
    async fn chunks_of(text: &[u8], block: usize) -> Vec<Vec<u8>> {
        let blocks: Vec<Result<Vec<u8>, String>> =
            text.chunks(block).map(|b| Ok(b.to_vec())).collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        send_file(futures::stream::iter(blocks), "mr-out-0", &tx)
            .await
            .expect("sent");
        drop(tx);
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.push(chunk.expect("a chunk").data);
        }
        out
    }

    #[tokio::test]
    async fn chunks_are_whole_lines_of_at_most_chunk_bytes_whatever_the_blocks() {
        // Lines of 1 to ~3,000 bytes, one of 200 KiB (longer than a chunk), no final newline.
        let mut text = Vec::new();
        for i in 0..2_000usize {
            let len = if i == 700 {
                200 << 10
            } else {
                1 + (i * 7919) % 3_000
            };
            text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
            text.push(b'\n');
        }
        text.extend_from_slice(b"last line without a newline");
        for block in [1, 1_000, CHUNK_BYTES, 1 << 20, text.len()] {
            let chunks = chunks_of(&text, block).await;
            assert_eq!(
                chunks.concat(),
                text,
                "blocks of {block}: every byte, in order"
            );
            let (last, whole) = chunks.split_last().expect("chunks");
            assert!(
                last.ends_with(b"last line without a newline"),
                "blocks of {block}"
            );
            for chunk in whole {
                assert_eq!(chunk.last(), Some(&b'\n'), "blocks of {block}: ends a line");
                let lines = chunk.iter().filter(|&&b| b == b'\n').count();
                assert!(
                    chunk.len() <= CHUNK_BYTES || lines == 1,
                    "blocks of {block}: {} bytes in {lines} lines",
                    chunk.len()
                );
            }
        }
    }
}
