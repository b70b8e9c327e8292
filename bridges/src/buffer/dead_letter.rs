//! The dead-letter line: one JSON object per record a sink refused for good.
//!
//! ```json
//! {"reason":"permanent: 400 Bad Request","dead_lettered_at_ms":1700000000000,
//!  "record":{"id":7,"destination":"https://…","timestamp_ms":1700000000000,
//!            "key":{"utf8":"device-7"},"payload":{"base64":"AAEC"},
//!            "headers":[{"name":"mqtt-topic","value":{"utf8":"plant/7"}}]}}
//! ```
//!
//! Byte fields are `{"utf8": …}` when they are valid UTF-8 (readable for
//! operators) and `{"base64": …}` otherwise, so a tool can replay them
//! exactly.
//!
//! The file is bounded ([`DeadLetterFile`]): a stream of bad messages must
//! not fill the disk. With [`DeadLetterPolicy::Rotate`] the file is renamed
//! to `dead-letter.1.jsonl` (replacing the previous one) once it reaches
//! half the limit, so the two hold the newest lines; with
//! [`DeadLetterPolicy::DiscardNew`] lines past the limit are not written.
//! Either way the lines lost are counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Default for [`super::BufferConfig::dead_letter_max_bytes`].
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 64 << 20;

/// The file older lines rotate to.
const ROTATED_FILE: &str = "dead-letter.1.jsonl";

/// What happens to a dead-letter line that would take the files past their
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPolicy {
    /// Keep the newest lines: the oldest half is discarded.
    #[default]
    Rotate,
    /// Keep the oldest lines: new ones are discarded.
    DiscardNew,
}

/// The dead-letter file of one buffer and its bound.
#[derive(Debug)]
pub(crate) struct DeadLetterFile {
    path: PathBuf,
    rotated: PathBuf,
    max_bytes: u64,
    policy: DeadLetterPolicy,
    /// Size and lines of the current file, and lines of the rotated one.
    bytes: u64,
    lines: u64,
    rotated_bytes: u64,
    rotated_lines: u64,
    /// Lines not kept since opening (discarded or rotated away).
    discarded: u64,
}

fn size_and_lines(path: &Path) -> io::Result<(u64, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((bytes, lines));
        }
        let n = buf.len();
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += n as u64;
        reader.consume(n);
    }
}

impl DeadLetterFile {
    pub(crate) fn open(
        path: PathBuf,
        max_bytes: u64,
        policy: DeadLetterPolicy,
    ) -> io::Result<DeadLetterFile> {
        let rotated = path.with_file_name(ROTATED_FILE);
        let (bytes, lines) = size_and_lines(&path)?;
        let (rotated_bytes, rotated_lines) = size_and_lines(&rotated)?;
        Ok(DeadLetterFile {
            path,
            rotated,
            max_bytes,
            policy,
            bytes,
            lines,
            rotated_bytes,
            rotated_lines,
            discarded: 0,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lines not kept since opening.
    pub(crate) fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Bytes of the current and the rotated file.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes + self.rotated_bytes
    }

    /// Appends `lines` in order, each kept or counted as discarded, with
    /// one sync at the end (`fsync`): a round of dead letters costs one
    /// fsync, not one per line, since the publishers they answer wait for
    /// it. The file a rotation moves away is synced before it is renamed;
    /// `sync_dir` runs once if a file was created or renamed.
    pub(crate) fn write_all(
        &mut self,
        lines: &[Vec<u8>],
        fsync: bool,
        sync_dir: impl Fn() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut open: Option<File> = None;
        let mut dir_changed = false;
        for line in lines {
            let len = line.len() as u64;
            match self.policy {
                DeadLetterPolicy::DiscardNew => {
                    if self.bytes() + len > self.max_bytes {
                        self.discarded += 1;
                        continue;
                    }
                }
                DeadLetterPolicy::Rotate => {
                    let half = self.max_bytes / 2;
                    if len > half {
                        self.discarded += 1;
                        continue;
                    }
                    if self.bytes + len > half {
                        if let (Some(file), true) = (open.take(), fsync) {
                            file.sync_data()?;
                        }
                        fs::rename(&self.path, &self.rotated)?;
                        self.discarded += self.rotated_lines;
                        self.rotated_bytes = self.bytes;
                        self.rotated_lines = self.lines;
                        self.bytes = 0;
                        self.lines = 0;
                        dir_changed = true;
                    }
                }
            }
            let file = match open.as_mut() {
                Some(file) => file,
                None => {
                    dir_changed |= self.bytes == 0 && !self.path.exists();
                    open.insert(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&self.path)?,
                    )
                }
            };
            file.write_all(line)?;
            self.bytes += len;
            self.lines += 1;
        }
        if fsync {
            if let Some(file) = &open {
                file.sync_data()?;
            }
            if dir_changed {
                sync_dir()?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Line<'a> {
    reason: &'a str,
    dead_lettered_at_ms: u64,
    record: LineRecord<'a>,
}

#[derive(Serialize)]
struct LineRecord<'a> {
    id: u64,
    destination: &'a str,
    timestamp_ms: u64,
    key: Option<ByteField<'a>>,
    payload: ByteField<'a>,
    headers: Vec<LineHeader<'a>>,
}

#[derive(Serialize)]
struct LineHeader<'a> {
    name: &'a str,
    value: ByteField<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ByteField<'a> {
    Utf8(&'a str),
    Base64(String),
}

impl<'a> ByteField<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => ByteField::Utf8(text),
            Err(_) => ByteField::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// The JSON line (with its trailing newline) for `record`.
pub(crate) fn line(record: &Record, reason: &str) -> Vec<u8> {
    let line = Line {
        reason,
        dead_lettered_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        record: LineRecord {
            id: record.id,
            destination: &record.destination,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_deref().map(ByteField::new),
            payload: ByteField::new(&record.payload),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| LineHeader {
                    name,
                    value: ByteField::new(value),
                })
                .collect(),
        },
    };
    // Serialising plain strings and numbers cannot fail.
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}
