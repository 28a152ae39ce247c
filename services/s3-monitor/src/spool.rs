//! The local spool: documents that could not be indexed yet, as JSON-lines
//! segment files in one directory.
//!
//! Each spooled batch is one segment, written to a temporary name, fsync'd,
//! renamed into place and the directory fsync'd: a segment is either complete
//! on disk or absent, so a crash never leaves a torn line behind. Segments are
//! named by a time-ordered sequence and replayed oldest first; one is deleted
//! only after OpenSearch accepted it. Documents OpenSearch refuses for good go
//! to `rejected.jsonl`, kept for a human to inspect.
//!
//! A segment that cannot be read back anyway (a disk fault, a hand edit, a
//! copy cut short) is set aside as `*.corrupt`: never replayed, never deleted,
//! so it cannot block the segments after it. The segments' total size is
//! bounded (`SPOOL_MAX_BYTES`); [`Spool::append`] refuses a batch that would
//! exceed it, and the caller holds the batch (and its offsets) instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::audit::IndexedDoc;

const SEGMENT_EXT: &str = "jsonl";
const SEGMENT_PREFIX: &str = "segment-";
/// What a set-aside segment's name gets appended.
pub const CORRUPT_SUFFIX: &str = ".corrupt";
pub const REJECTED_FILE: &str = "rejected.jsonl";

/// A refused document and OpenSearch's reason.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Rejected {
    pub reason: String,
    #[serde(flatten)]
    pub doc: IndexedDoc,
}

/// The spool's metric handles, kept current by the spool itself (it is the
/// only writer of its directory).
#[derive(Debug, Clone, Default)]
pub struct SpoolGauges {
    /// Complete segments on disk.
    pub segments: Gauge,
    /// Their total size in bytes.
    pub bytes: Gauge,
    /// The bound (`SPOOL_MAX_BYTES`).
    pub max_bytes: Gauge,
    /// 1 while a batch waits because the spool is full.
    pub full: Gauge,
    /// Segments set aside as corrupt since start.
    pub corrupt: Counter,
}

/// Why a segment could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(
        "the spool is full: {used} bytes spooled, this batch needs {needed} more, SPOOL_MAX_BYTES is {max}"
    )]
    Full { used: u64, needed: u64, max: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a segment could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Gone meanwhile (nothing to do).
    #[error("the segment is gone")]
    Missing,
    /// Unreadable or not a sequence of documents: to be set aside.
    #[error("{0}")]
    Corrupt(String),
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    seq: AtomicU64,
    max_bytes: u64,
    used: AtomicU64,
    full: AtomicBool,
    gauges: SpoolGauges,
}

impl Spool {
    /// Opens (creating) the spool directory, holding at most `max_bytes` of
    /// segments; leftovers of an interrupted write (`*.tmp`) are removed,
    /// since their batch was never committed.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Self> {
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
            max_bytes,
            used: AtomicU64::new(0),
            full: AtomicBool::new(false),
            gauges: SpoolGauges::default(),
        };
        let segments = spool.segments()?;
        let used: u64 = segments.iter().map(|s| segment_len(s)).sum();
        spool.used.store(used, Ordering::SeqCst);
        spool.gauges.bytes.set(clamp_i64(used));
        spool.gauges.max_bytes.set(clamp_i64(max_bytes));
        spool
            .gauges
            .segments
            .set(i64::try_from(segments.len()).unwrap_or(i64::MAX));
        Ok(spool)
    }

    /// The spool's metric handles, to register.
    pub fn gauges(&self) -> SpoolGauges {
        self.gauges.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of segments on disk, and the bound.
    pub fn usage(&self) -> (u64, u64) {
        (self.used.load(Ordering::SeqCst), self.max_bytes)
    }

    /// Whether a batch is waiting for room (set by the writer that waits).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
        self.gauges.full.set(i64::from(full));
    }

    /// Durably writes `docs` as one new segment and returns its path, unless
    /// that would take the spool over its bound.
    pub fn append(&self, docs: &[IndexedDoc]) -> Result<PathBuf, AppendError> {
        let buf = encode(docs)?;
        let needed = buf.len() as u64;
        let used = self.used.load(Ordering::SeqCst);
        if !fits(used, needed, self.max_bytes) {
            return Err(AppendError::Full {
                used,
                needed,
                max: self.max_bytes,
            });
        }
        Ok(self.write_segment(&buf)?)
    }

    /// Moves `docs` (a subset of `segment`'s documents, still to be retried)
    /// to a new segment, then deletes `segment`. Never refused for size: the
    /// spool does not grow.
    pub fn replace(&self, segment: &Path, docs: &[IndexedDoc]) -> io::Result<()> {
        if !docs.is_empty() {
            self.write_segment(&encode(docs)?)?;
        }
        self.remove(segment)
    }

    fn write_segment(&self, buf: &[u8]) -> io::Result<PathBuf> {
        let nanos = chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{SEGMENT_PREFIX}{nanos:020}-{seq:08}.{SEGMENT_EXT}");
        let final_path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(buf)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &final_path)?;
        self.gauges.segments.inc();
        self.add_used(buf.len() as u64, true);
        sync_dir(&self.dir)?;
        Ok(final_path)
    }

    fn add_used(&self, n: u64, grow: bool) {
        let update = |u: u64| {
            Some(if grow {
                u.saturating_add(n)
            } else {
                u.saturating_sub(n)
            })
        };
        let prev = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, update)
            .unwrap_or_default();
        self.gauges
            .bytes
            .set(clamp_i64(update(prev).unwrap_or_default()));
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
    pub fn read(&self, segment: &Path) -> Result<Vec<IndexedDoc>, ReadError> {
        match fs::read(segment) {
            Ok(bytes) => parse_segment(&bytes).map_err(ReadError::Corrupt),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ReadError::Missing),
            Err(e) => Err(ReadError::Corrupt(format!("unreadable: {e}"))),
        }
    }

    /// Sets a segment that cannot be replayed aside (renamed to
    /// `*.corrupt`, kept for a human) and returns its new path.
    pub fn set_aside(&self, segment: &Path) -> io::Result<PathBuf> {
        let len = segment_len(segment);
        let mut name = segment.as_os_str().to_owned();
        name.push(CORRUPT_SUFFIX);
        let to = PathBuf::from(name);
        fs::rename(segment, &to)?;
        self.gauges.segments.dec();
        self.gauges.corrupt.inc();
        self.add_used(len, false);
        sync_dir(&self.dir)?;
        Ok(to)
    }

    /// Deletes a segment whose documents are now indexed.
    pub fn remove(&self, segment: &Path) -> io::Result<()> {
        let len = segment_len(segment);
        fs::remove_file(segment)?;
        self.gauges.segments.dec();
        self.add_used(len, false);
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

/// A segment's bytes: one JSON document per line, each line ending in `\n`.
fn encode(docs: &[IndexedDoc]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for d in docs {
        serde_json::to_writer(&mut buf, d)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Whether `needed` more bytes stay within `max` (strictly: a batch larger
/// than the whole bound waits for OpenSearch rather than overshooting).
pub fn fits(used: u64, needed: u64, max: u64) -> bool {
    used.checked_add(needed).is_some_and(|total| total <= max)
}

/// Parses a segment's bytes. A segment is written whole, so anything short
/// of complete newline-terminated documents means it was damaged on disk.
pub fn parse_segment(bytes: &[u8]) -> Result<Vec<IndexedDoc>, String> {
    if bytes.is_empty() {
        return Err("empty segment".into());
    }
    if !bytes.ends_with(b"\n") {
        return Err("truncated: the last line has no newline".into());
    }
    let mut docs = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let text = std::str::from_utf8(line).map_err(|e| format!("line {n} is not UTF-8: {e}"))?;
        if text.trim().is_empty() {
            continue;
        }
        docs.push(serde_json::from_str(text).map_err(|e| format!("line {n}: {e}"))?);
    }
    Ok(docs)
}

/// A segment's size on disk; 0 for something that is not a file.
fn segment_len(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map_or(0, |m| m.len())
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        assert!(!dir.join("segment-x.jsonl.tmp").exists());
        let a = docs(3);
        let b = docs(1);
        let pa = spool.append(&a).unwrap();
        let pb = spool.append(&b).unwrap();
        assert_eq!(spool.segments().unwrap(), [pa.clone(), pb.clone()]);
        assert_eq!(spool.gauges().segments.get(), 2);
        // A reopened spool counts what it finds.
        assert_eq!(
            Spool::open(&dir, 1 << 20).unwrap().gauges().segments.get(),
            2
        );
        assert_eq!(spool.read(&pa).unwrap(), a);
        assert_eq!(spool.read(&pb).unwrap(), b);
        spool.remove(&pa).unwrap();
        assert_eq!(spool.segments().unwrap(), [pb]);
        assert_eq!(spool.gauges().segments.get(), 1);

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

    fn line(d: &IndexedDoc) -> String {
        format!("{}\n", serde_json::to_string(d).unwrap())
    }

    #[test]
    fn damaged_segments_are_named_with_their_reason() {
        let d = docs(2);
        let good = format!("{}{}", line(&d[0]), line(&d[1]));
        assert_eq!(parse_segment(good.as_bytes()).unwrap(), d);
        let cases: [(Vec<u8>, &str); 5] = [
            (Vec::new(), "empty segment"),
            (good.as_bytes()[..good.len() - 10].to_vec(), "truncated"),
            (good.trim_end().as_bytes().to_vec(), "truncated"),
            (
                format!("{}{{\"not\": json\n", line(&d[0])).into_bytes(),
                "line 2:",
            ),
            (
                [line(&d[0]).as_bytes(), b"\xff\xfe{}\n"].concat(),
                "line 2 is not UTF-8",
            ),
        ];
        for (bytes, want) in cases {
            let err = parse_segment(&bytes).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        // A line that is JSON but not a document is damage too.
        assert!(
            parse_segment(b"{\"a\": 1}\n")
                .unwrap_err()
                .starts_with("line 1:")
        );
    }

    #[test]
    fn the_bound_is_strict() {
        assert!(fits(0, 10, 10));
        assert!(!fits(0, 11, 10));
        assert!(fits(5, 5, 10));
        assert!(!fits(5, 6, 10));
        assert!(!fits(u64::MAX, 1, u64::MAX));
    }

    #[test]
    fn a_full_spool_refuses_a_batch_and_frees_space_on_removal() {
        let dir = temp_dir();
        let one = docs(1);
        let size = encode(&one).unwrap().len() as u64;
        let spool = Spool::open(&dir, size * 2).unwrap();
        let a = spool.append(&one).unwrap();
        spool.append(&one).unwrap();
        assert_eq!(spool.usage(), (size * 2, size * 2));
        assert_eq!(spool.gauges().bytes.get(), (size * 2) as i64);
        match spool.append(&one) {
            Err(AppendError::Full { used, needed, max }) => {
                assert_eq!((used, needed, max), (size * 2, size, size * 2));
            }
            other => panic!("expected Full, got {other:?}"),
        }
        // Moving a segment's leftovers never counts against the bound.
        spool.replace(&a, &one).unwrap();
        assert_eq!(spool.usage().0, size * 2);
        let first = spool.segments().unwrap()[0].clone();
        spool.remove(&first).unwrap();
        assert_eq!(spool.usage().0, size);
        spool.append(&one).unwrap();
        // A reopened spool measures what it finds.
        assert_eq!(Spool::open(&dir, 1).unwrap().usage(), (size * 2, 1));
        spool.set_full(true);
        assert!(spool.is_full());
        assert_eq!(spool.gauges().full.get(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_segments_are_set_aside_not_deleted() {
        let dir = temp_dir();
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        let good = spool.append(&docs(1)).unwrap();
        let bad = dir.join("segment-00000000000000000001-00000000.jsonl");
        fs::write(&bad, b"{\"torn\": ").unwrap();
        // Not a file at all: unreadable.
        let odd = dir.join("segment-00000000000000000002-00000000.jsonl");
        fs::create_dir(&odd).unwrap();
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(
            spool.segments().unwrap(),
            [bad.clone(), odd.clone(), good.clone()]
        );
        let used = spool.usage().0;
        assert!(matches!(spool.read(&bad), Err(ReadError::Corrupt(r)) if r.contains("truncated")));
        assert!(
            matches!(spool.read(&odd), Err(ReadError::Corrupt(r)) if r.starts_with("unreadable"))
        );
        assert!(matches!(
            spool.read(&dir.join("segment-9.jsonl")),
            Err(ReadError::Missing)
        ));
        let moved = spool.set_aside(&bad).unwrap();
        spool.set_aside(&odd).unwrap();
        assert_eq!(fs::read(&moved).unwrap(), b"{\"torn\": ");
        assert!(moved.to_string_lossy().ends_with(".jsonl.corrupt"));
        assert_eq!(spool.segments().unwrap(), [good]);
        assert_eq!(spool.usage().0, used - 9);
        let g = spool.gauges();
        assert_eq!((g.segments.get(), g.corrupt.get()), (1, 2));
        fs::remove_dir_all(dir).unwrap();
    }
}
