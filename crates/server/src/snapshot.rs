//! Saving the hot window on shutdown and restoring it on start, so a restart keeps the last
//! hour. The file is a sequence of length-delimited Goldmane `Flow` messages, one per
//! (key, bucket) window with the bucket's bounds as start and end.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use caracal_flow::time::BUCKET_SECONDS;
use caracal_flow::Flow;
use caracal_proto::goldmane as wire;
use prost::Message;

use crate::hub::Hub;

const FILE_NAME: &str = "hot-window.pb";

/// Writes every held window to `DIR/hot-window.pb` (through a temporary file, atomically).
pub fn save(hub: &Hub, directory: &Path) -> std::io::Result<()> {
    let path = directory.join(FILE_NAME);
    let temporary = directory.join(format!("{FILE_NAME}.tmp"));
    let mut out = BufWriter::new(File::create(&temporary)?);
    let ring = hub.ring();
    let mut bucket = ring.oldest_bucket();
    let mut saved = 0usize;
    while bucket <= ring.current_bucket() + BUCKET_SECONDS {
        for (_, flow) in ring.bucket_flows(bucket) {
            let bytes = wire::Flow::from(&flow).encode_length_delimited_to_vec();
            out.write_all(&bytes)?;
            saved += 1;
        }
        bucket += BUCKET_SECONDS;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&temporary, &path)?;
    tracing::info!(windows = saved, path = %path.display(), "saved the hot window");
    Ok(())
}

/// Loads `DIR/hot-window.pb` if present; windows that are now too old are skipped.
pub fn restore(hub: &Hub, directory: &Path) -> std::io::Result<()> {
    let path = directory.join(FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    BufReader::new(file).read_to_end(&mut bytes)?;
    let mut remaining = bytes.as_slice();
    let (mut restored, mut skipped) = (0usize, 0usize);
    let mut batch = Vec::new();
    while !remaining.is_empty() {
        let message = wire::Flow::decode_length_delimited(&mut remaining).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {error}", path.display()),
            )
        })?;
        match Flow::try_from(message) {
            Ok(flow) => batch.push(flow),
            Err(_) => skipped += 1,
        }
    }
    for result in hub.ingest_many(&batch, None) {
        match result {
            Ok(_) => restored += 1,
            Err(_) => skipped += 1,
        }
    }
    tracing::info!(restored, skipped, path = %path.display(), "restored the hot window");
    Ok(())
}
