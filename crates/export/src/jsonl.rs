//! A record as one JSON line: the log's origin, the leaf index, the leaf hash and the record's
//! exact stored bytes, so whoever holds the file can check each line against the log's signed
//! checkpoints (leaf hash = SHA-256(0x00 ‖ record)). A pruned record keeps its line, marked,
//! so the sequence in the file has no holes.

use crate::Identity;
use crate::source::Entry;

pub fn line(e: &Entry, id: &Identity) -> String {
    let origin = serde_json::to_string(&id.origin).expect("a string serialises");
    let hash = hex::encode(e.leaf_hash);
    if e.record.is_none() {
        return format!(
            r#"{{"log":{origin},"idx":{},"leaf_hash":"{hash}","pruned":true}}"#,
            e.idx
        );
    }
    // The stored JSON is compact canonical JSON: one line, embedded as it is.
    format!(
        r#"{{"log":{origin},"idx":{},"leaf_hash":"{hash}","record":{}}}"#,
        e.idx, e.json
    )
}
