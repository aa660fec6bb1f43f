//! An append-only file of one JSON object per line (JSON lines, or FHIR NDJSON): written and
//! `fdatasync`ed a batch at a time before the cursor moves. The file says itself where it
//! stopped — its last complete line names the last record — so a crash between the sync and
//! the cursor's update resends nothing, and a line cut short by a crash is dropped and written
//! again.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::Format;

pub struct FileSink {
    path: PathBuf,
    format: Format,
}

impl FileSink {
    pub fn new(path: PathBuf, format: Format) -> FileSink {
        FileSink { path, format }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The record after the file's last complete line (`None` for an empty or new file),
    /// dropping a cut-short last line.
    pub async fn resume(&self) -> Result<Option<u64>> {
        let (path, format) = (self.path.clone(), self.format);
        tokio::task::spawn_blocking(move || last_index(&path, format)).await?
    }

    /// Appends the lines and makes them durable.
    pub async fn append(&self, lines: Vec<String>) -> Result<()> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in lines {
                buf.push_str(&l);
                buf.push('\n');
            }
            f.write_all(buf.as_bytes())
                .and_then(|_| f.sync_data())
                .with_context(|| format!("cannot write {}", path.display()))
        })
        .await?
    }
}

/// Reads back from the end to the last newline; a tail without one is cut off.
fn last_index(path: &std::path::Path, format: Format) -> Result<Option<u64>> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = f.metadata()?.len();
    // A line is one record: well under this.
    let window = len.min(4 << 20);
    f.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    f.read_to_end(&mut tail)?;
    let complete = match tail.iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None if len > window => anyhow::bail!("{}: a line longer than 4 MiB", path.display()),
        None => 0,
    };
    if complete < tail.len() {
        tracing::warn!(file = %path.display(), bytes = tail.len() - complete, "a cut-short last line is dropped and written again");
        f.set_len(len - window + complete as u64)?;
        f.sync_data()?;
    }
    let text = std::str::from_utf8(&tail[..complete])
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(last)
        .with_context(|| format!("{}: the last line is not JSON", path.display()))?;
    let idx = match format {
        Format::Fhir => v["id"]
            .as_str()
            .and_then(|id| id.rsplit('-').next())
            .and_then(|n| n.parse().ok()),
        _ => v["idx"].as_u64(),
    };
    idx.map(Some).with_context(|| {
        format!(
            "{}: the last line does not say which record it is; is this another program's file?",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_says_where_it_stopped_and_a_cut_line_goes() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path().join("a.jsonl"), Format::Jsonl);
        assert_eq!(sink.resume().await.unwrap(), None);
        sink.append(vec![r#"{"idx":0}"#.into(), r#"{"idx":1}"#.into()])
            .await
            .unwrap();
        assert_eq!(sink.resume().await.unwrap(), Some(1));
        // A crash in the middle of a write.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(sink.path())
            .unwrap();
        f.write_all(br#"{"idx":2,"rec"#).unwrap();
        assert_eq!(sink.resume().await.unwrap(), Some(1));
        assert_eq!(
            std::fs::read_to_string(sink.path()).unwrap(),
            "{\"idx\":0}\n{\"idx\":1}\n"
        );
        let fhir = FileSink::new(dir.path().join("b.ndjson"), Format::Fhir);
        fhir.append(vec![
            r#"{"resourceType":"AuditEvent","id":"0a1b-41"}"#.into(),
        ])
        .await
        .unwrap();
        assert_eq!(fhir.resume().await.unwrap(), Some(41));
        std::fs::write(dir.path().join("c"), "hello\n").unwrap();
        let other = FileSink::new(dir.path().join("c"), Format::Jsonl);
        assert!(
            other.resume().await.is_err(),
            "not our file: refuse, don't append"
        );
    }
}
