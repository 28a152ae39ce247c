//! The local spool: documents that could not be indexed yet, as JSON-lines
//! segment files in one directory.
//!
//! Each spooled batch is one segment, written to a temporary name, fsync'd,
//! renamed into place and the directory fsync'd: a segment is either complete
//! on disk or absent, so a crash never leaves a torn line behind. Segments are
//! named by a time-ordered sequence and replayed oldest first; one is deleted
//! only after OpenSearch accepted it. Documents OpenSearch refuses for good go
//! to `rejected.jsonl`, kept for a human to inspect.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::gauge::Gauge;

use crate::audit::IndexedDoc;

const SEGMENT_EXT: &str = "jsonl";
const SEGMENT_PREFIX: &str = "segment-";
pub const REJECTED_FILE: &str = "rejected.jsonl";

/// A refused document and OpenSearch's reason.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Rejected {
    pub reason: String,
    #[serde(flatten)]
    pub doc: IndexedDoc,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    seq: AtomicU64,
    /// Complete segments on disk, kept current by this spool's own writes
    /// and deletions (it is the only writer of its directory).
    segments: Gauge,
}

impl Spool {
    /// Opens (creating) the spool directory; leftovers of an interrupted
    /// write (`*.tmp`) are removed, since their batch was never committed.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
            }
        }
        let spool = Self {
            dir,
            seq: AtomicU64::new(0),
            segments: Gauge::default(),
        };
        spool
            .segments
            .set(i64::try_from(spool.segments()?.len()).unwrap_or(i64::MAX));
        Ok(spool)
    }

    /// The number of segments waiting, as a gauge to register.
    pub fn segments_gauge(&self) -> Gauge {
        self.segments.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably writes `docs` as one new segment and returns its path.
    pub fn append(&self, docs: &[IndexedDoc]) -> io::Result<PathBuf> {
        let nanos = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{SEGMENT_PREFIX}{nanos:020}-{seq:08}.{SEGMENT_EXT}");
        let final_path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut buf = Vec::new();
        for d in docs {
            serde_json::to_writer(&mut buf, d)?;
            buf.push(b'\n');
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &final_path)?;
        self.segments.inc();
        sync_dir(&self.dir)?;
        Ok(final_path)
    }

    /// Complete segments, oldest first.
    pub fn segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == SEGMENT_EXT)
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(SEGMENT_PREFIX))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The documents of one segment.
    pub fn read(&self, segment: &Path) -> io::Result<Vec<IndexedDoc>> {
        let mut docs = Vec::new();
        for line in BufReader::new(File::open(segment)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            docs.push(serde_json::from_str(&line).map_err(io::Error::other)?);
        }
        Ok(docs)
    }

    /// Deletes a segment whose documents are now indexed.
    pub fn remove(&self, segment: &Path) -> io::Result<()> {
        fs::remove_file(segment)?;
        self.segments.dec();
        sync_dir(&self.dir)
    }

    /// Durably appends refused documents to `rejected.jsonl`.
    pub fn reject(&self, rejected: &[Rejected]) -> io::Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in rejected {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(REJECTED_FILE))?;
        f.write_all(&buf)?;
        f.sync_all()
    }

    /// Whether the directory accepts writes (readiness).
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = self.dir.join(".probe.tmp");
        File::create(&probe)?.sync_all()?;
        fs::remove_file(probe)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{RawRecord, Role, build};

    fn docs(n: i64) -> Vec<IndexedDoc> {
        (0..n)
            .map(|i| {
                let rec = RawRecord {
                    topic: "t".into(),
                    offset: i,
                    payload: Some(format!(r#"{{"n": {i}}}"#).into_bytes()),
                    timestamp_ms: Some(1_800_000_000_000),
                    ..RawRecord::default()
                };
                build(&rec, Role::DeadLetter, "audit", chrono::Utc::now())
            })
            .collect()
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("s3-spool-test-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn segments_round_trip_in_order_and_are_removed() {
        let dir = temp_dir();
        fs::write(dir.join("segment-x.jsonl.tmp"), "torn").unwrap();
        let spool = Spool::open(&dir).unwrap();
        assert!(!dir.join("segment-x.jsonl.tmp").exists());
        let a = docs(3);
        let b = docs(1);
        let pa = spool.append(&a).unwrap();
        let pb = spool.append(&b).unwrap();
        assert_eq!(spool.segments().unwrap(), [pa.clone(), pb.clone()]);
        assert_eq!(spool.segments_gauge().get(), 2);
        // A reopened spool counts what it finds.
        assert_eq!(Spool::open(&dir).unwrap().segments_gauge().get(), 2);
        assert_eq!(spool.read(&pa).unwrap(), a);
        assert_eq!(spool.read(&pb).unwrap(), b);
        spool.remove(&pa).unwrap();
        assert_eq!(spool.segments().unwrap(), [pb]);
        assert_eq!(spool.segments_gauge().get(), 1);

        spool
            .reject(&[Rejected {
                reason: "mapper_parsing_exception".into(),
                doc: a[0].clone(),
            }])
            .unwrap();
        let text = fs::read_to_string(dir.join(REJECTED_FILE)).unwrap();
        let back: Rejected = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(back.doc, a[0]);
        // The rejected file is not a segment: it is never replayed.
        assert_eq!(spool.segments().unwrap().len(), 1);
        spool.check_writable().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }
}
