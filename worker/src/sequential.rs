//! The lab's `mrsequential`: one process runs an app over whole files, sorts everything in
//! memory and reduces. No coordinator, splits, partitions or intermediate files, which is
//! what makes it a reference for the distributed output.

use crate::app_runtime::{AppError, AppRuntime, Limits, ReduceBatch};
use crate::tasks::write_line;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Why a sequential run failed.
#[derive(Debug, thiserror::Error)]
pub enum SequentialError {
    /// The app failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `app_path` over `inputs` (paths relative to `data_dir`, which are also the documents'
/// names) and writes the sorted `key value` lines to `out`. With `cache_dir`, the compiled
/// app is kept there, as a worker keeps it.
pub fn run(
    app_path: &Path,
    data_dir: &Path,
    inputs: &[String],
    limits: &Limits,
    cache_dir: Option<&Path>,
    out: &mut impl Write,
) -> Result<(), SequentialError> {
    let io = |what: String| move |source| SequentialError::Io { what, source };
    let wasm = std::fs::read(app_path).map_err(io(format!("reading {}", app_path.display())))?;
    let name = app_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime = AppRuntime::with_cache_dir(cache_dir)?;
    let module = runtime.load(&name, &hex::encode(Sha256::digest(&wasm)), &wasm)?;

    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for input in inputs {
        let path = data_dir.join(input);
        let contents = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let output = module.map(limits, input, &contents)?;
        pairs.extend(output.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));

    let mut reducer = module.reducer(limits)?;
    let mut start = 0;
    while start < pairs.len() {
        let key = &pairs[start].0;
        let end = start + pairs[start..].iter().take_while(|(k, _)| k == key).count();
        let mut batch = ReduceBatch::new();
        batch.push_group(key, pairs[start..end].iter().map(|(_, v)| v));
        let values = reducer.reduce_batch(&batch)?;
        let value = values.first().map(Vec::as_slice).unwrap_or_default();
        write_line(out, key, value).map_err(io("writing output".into()))?;
        start = end;
    }
    out.flush().map_err(io("writing output".into()))?;
    Ok(())
}
