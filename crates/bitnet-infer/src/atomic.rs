//! Files that appear whole or not at all: written to `NAME.tmp` beside the target, synced, then
//! renamed over it. A failed write (a full disk, a bad tensor) removes the temporary file and
//! leaves any previous file untouched.

use crate::error::{InferError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `path` through `body`, which receives a buffered writer and the temporary path (for
/// error messages).
pub fn write_atomic<F>(path: &Path, body: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>, &Path) -> Result<()>,
{
    let tmp = tmp_path(path);
    let result = (|| -> Result<()> {
        let io = |e| InferError::io(&tmp, e);
        let file = File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        body(&mut w, &tmp)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| InferError::io(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w, tmp| w.write_all(bytes).map_err(|e| InferError::io(tmp, e)))
}
