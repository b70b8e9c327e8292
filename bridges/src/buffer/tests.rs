//! Buffer behaviour against a real directory: rollover, restart, torn
//! writes, bit rot, quota policies, dead letters, crash cycles.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{Frame, HEADER_LEN};
use super::*;

fn record(id: u64) -> Record {
    Record {
        id,
        destination: "https://sink.test/in".into(),
        key: (id % 2 == 0).then(|| Bytes::from(format!("k{id}"))),
        payload: Bytes::from(format!("payload of record {id:06}")),
        headers: vec![("mqtt-topic".into(), Bytes::from_static(b"plant/1/temp"))],
        timestamp_ms: 1_000 + id,
    }
}

fn records(ids: std::ops::Range<u64>) -> Vec<Record> {
    ids.map(record).collect()
}

/// Small segments so a few dozen records span several files; no fsync so
/// the tests stay fast (a dropped `Buffer` is a process crash, not a power
/// loss, so the page cache keeps what was written).
fn config(dir: &Path) -> BufferConfig {
    BufferConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 512,
        max_bytes: 1 << 20,
        full_policy: FullPolicy::Block,
        fsync: false,
        dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
        dead_letter_policy: DeadLetterPolicy::Rotate,
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn ids(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.id).collect()
}

/// Every unacknowledged id, in order.
fn all_ids(buffer: &mut Buffer) -> Vec<u64> {
    ids(&buffer.peek(usize::MAX).unwrap())
}

/// Byte offset of record `index` (0-based) in a segment file.
fn frame_offset(path: &Path, index: usize) -> usize {
    let data = Bytes::from(fs::read(path).unwrap());
    let mut pos = HEADER_LEN as usize;
    for _ in 0..index {
        match format::parse_frame(&data.slice(pos..)) {
            Frame::Record(_, len) => pos += len,
            other => panic!("no frame at {pos}: {other:?}"),
        }
    }
    pos
}

#[test]
fn append_peek_ack_across_segment_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert!(buffer.is_empty());
    assert_eq!(buffer.oldest_timestamp_ms(), None);
    for batch in 0..6 {
        let appended = buffer
            .append(&records(batch * 10..batch * 10 + 10))
            .unwrap();
        assert_eq!(appended.dropped_oldest, 0);
    }
    assert!(
        segment_files(dir.path()).len() >= 4,
        "small segments roll over"
    );
    assert_eq!(buffer.len(), 60);
    assert_eq!(buffer.next_id(), 60);
    assert_eq!(buffer.oldest_timestamp_ms(), Some(1_000));

    let first = buffer.peek(25).unwrap();
    assert_eq!(first, records(0..25), "every field survives the round trip");
    assert_eq!(
        buffer.peek(25).unwrap(),
        first,
        "peek does not move the cursor"
    );
    buffer.ack(25).unwrap();
    assert_eq!(buffer.len(), 35);
    assert_eq!(buffer.oldest_timestamp_ms(), Some(1_025));
    assert_eq!(ids(&buffer.peek(3).unwrap()), vec![25, 26, 27]);
    buffer.ack(35).unwrap();
    assert!(buffer.is_empty());
    assert!(buffer.peek(10).unwrap().is_empty());
    assert!(matches!(
        buffer.ack(1),
        Err(BufferError::AckOutOfRange {
            requested: 1,
            available: 0
        })
    ));
}

#[test]
fn restart_keeps_unacked_records_cursor_and_next_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..20)).unwrap();
        buffer.peek(7).unwrap();
        buffer.ack(7).unwrap();
    }
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        assert_eq!(buffer.len(), 13);
        assert_eq!(buffer.next_id(), 20);
        assert_eq!(buffer.oldest_timestamp_ms(), Some(1_007));
        assert_eq!(all_ids(&mut buffer), (7..20).collect::<Vec<_>>());
        assert_eq!(
            buffer.recovery(),
            &Recovery {
                segments: buffer.recovery().segments,
                records: 13,
                ..Recovery::default()
            }
        );
        buffer.ack(13).unwrap();
    }
    // Everything acknowledged: the ids stay used.
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert!(buffer.is_empty());
    assert_eq!(buffer.next_id(), 20);
    assert!(matches!(
        buffer.append(&[record(19)]),
        Err(BufferError::IdNotIncreasing {
            id: 19,
            next_id: 20
        })
    ));
    buffer.append(&[record(25)]).unwrap();
    assert_eq!(buffer.next_id(), 26);
    assert_eq!(all_ids(&mut buffer), vec![25]);
}

#[test]
fn ids_must_increase_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    let batch = vec![record(3), record(3)];
    assert!(matches!(
        buffer.append(&batch),
        Err(BufferError::IdNotIncreasing { id: 3, next_id: 4 })
    ));
    assert!(buffer.is_empty(), "a refused batch leaves nothing behind");
    assert_eq!(buffer.bytes(), 0);
}

#[test]
fn torn_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..10)).unwrap();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let full = fs::metadata(&last).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len(full - 3).unwrap();
    drop(file);

    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    let recovery = buffer.recovery().clone();
    assert!(recovery.torn_bytes > 0);
    assert_eq!(recovery.corrupt_records, 0);
    assert_eq!(buffer.len(), 9);
    assert_eq!(all_ids(&mut buffer), (0..9).collect::<Vec<_>>());
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        full - 3 - recovery.torn_bytes
    );
    // Appends continue cleanly after the cut. The cut record's id is free
    // again: with fsync on, its append never returned Ok.
    assert_eq!(buffer.next_id(), 9);
    buffer.append(&records(9..12)).unwrap();
    drop(buffer);
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(buffer.recovery().torn_bytes, 0);
    assert_eq!(all_ids(&mut buffer), (0..12).collect::<Vec<_>>());
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..10)).unwrap();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let mut data = fs::read(&last).unwrap();
    let full = data.len() as u64;
    // Garbage that even starts like a frame.
    data.extend_from_slice(&format::FRAME_MAGIC.to_le_bytes());
    data.extend_from_slice(&[0xAB; 33]);
    fs::write(&last, data).unwrap();

    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(buffer.recovery().torn_bytes, 37);
    assert_eq!(fs::metadata(&last).unwrap().len(), full);
    assert_eq!(all_ids(&mut buffer), (0..10).collect::<Vec<_>>());
}

#[test]
fn bit_flip_in_a_middle_record_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let big = BufferConfig {
        segment_bytes: 1 << 16,
        ..config(dir.path())
    };
    {
        let mut buffer = Buffer::open(big.clone()).unwrap();
        buffer.append(&records(0..10)).unwrap();
    }
    // One segment: the damage is in the last segment, yet not at its end,
    // so it must not be mistaken for a torn tail.
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let mut data = fs::read(&files[0]).unwrap();
    data[frame_offset(&files[0], 4) + 40] ^= 0x04;
    // And the length field of record 7, so the reader must resynchronise.
    data[frame_offset(&files[0], 7) + 5] ^= 0x01;
    fs::write(&files[0], &data).unwrap();

    let mut buffer = Buffer::open(big.clone()).unwrap();
    assert_eq!(buffer.recovery().corrupt_records, 2);
    assert_eq!(buffer.recovery().torn_bytes, 0);
    assert_eq!(buffer.corrupt_total(), 2);
    assert_eq!(buffer.len(), 8);
    assert_eq!(all_ids(&mut buffer), vec![0, 1, 2, 3, 5, 6, 8, 9]);
    assert_eq!(
        buffer.corrupt_total(),
        2,
        "known damage is not counted twice"
    );
    buffer.ack(8).unwrap();
    assert!(buffer.is_empty());
    // Appends continue after the intact tail.
    buffer.append(&records(10..12)).unwrap();
    drop(buffer);
    let mut buffer = Buffer::open(big).unwrap();
    assert_eq!(all_ids(&mut buffer), vec![10, 11]);
}

#[test]
fn bit_flip_in_a_sealed_segment_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..40)).unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    // The last record of the first (sealed) segment.
    let mut data = fs::read(&files[0]).unwrap();
    let end = data.len();
    data[end - 2] ^= 0x80;
    fs::write(&files[0], &data).unwrap();
    let in_first = {
        let bytes = Bytes::from(data);
        let mut count = 0;
        let mut pos = HEADER_LEN as usize;
        while let Frame::Record(_, len) = format::parse_frame(&bytes.slice(pos..)) {
            count += 1;
            pos += len;
        }
        count as u64
    };

    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(buffer.recovery().corrupt_records, 1);
    assert_eq!(
        buffer.recovery().torn_bytes,
        0,
        "sealed segments are never cut"
    );
    let expected: Vec<u64> = (0..40).filter(|&id| id != in_first).collect();
    assert_eq!(all_ids(&mut buffer), expected);
}

#[test]
fn damage_appearing_while_open_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..40)).unwrap();
    }
    // Freshly opened, only the first record is read ahead; the reader
    // meets the damage when it reaches the second segment.
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    buffer.ack(1).unwrap();
    let files = segment_files(dir.path());
    let mut data = fs::read(&files[1]).unwrap();
    data[frame_offset(&files[1], 0) + 30] ^= 0x01;
    fs::write(&files[1], &data).unwrap();
    let got = all_ids(&mut buffer);
    assert_eq!(got.len(), 38);
    assert_eq!(buffer.corrupt_total(), 1);
    assert_eq!(buffer.len(), 38);
}

#[test]
fn quota_block_refuses_and_leaves_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        max_bytes: 2048,
        ..config(dir.path())
    };
    let mut buffer = Buffer::open(cfg).unwrap();
    let mut next = 0;
    loop {
        let (len, bytes, files) = (buffer.len(), buffer.bytes(), segment_files(dir.path()));
        match buffer.append(&records(next..next + 3)) {
            Ok(appended) => {
                assert_eq!(appended.dropped_oldest, 0);
                next += 3;
            }
            Err(BufferError::Full) => {
                assert_eq!((buffer.len(), buffer.bytes()), (len, bytes));
                assert_eq!(segment_files(dir.path()), files);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(buffer.bytes() <= 2048);
        assert!(next < 1000, "never full");
    }
    assert!(next > 3);
    assert!(matches!(
        buffer.append(&records(next..next + 3)),
        Err(BufferError::Full)
    ));
    let len = buffer.len();
    assert_eq!(len, next);
    assert_eq!(
        all_ids(&mut buffer),
        (0..next).collect::<Vec<_>>(),
        "nothing dropped"
    );
    assert_eq!(buffer.dropped_total(), 0);

    // Once the sink catches up, appends go through again.
    buffer.ack(len as usize).unwrap();
    buffer.append(&records(next + 1..next + 4)).unwrap();
    assert_eq!(buffer.len(), 3);
    assert!(buffer.bytes() <= 2048);

    let huge = Record {
        payload: Bytes::from(vec![0u8; 4096]),
        ..record(next + 10)
    };
    assert!(matches!(
        buffer.append(&[huge]),
        Err(BufferError::TooLarge {
            max_bytes: 2048,
            ..
        })
    ));
    assert_eq!(buffer.len(), 3, "a batch that can never fit drops nothing");
}

#[test]
fn quota_drop_oldest_drops_whole_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        max_bytes: 2048,
        full_policy: FullPolicy::DropOldest,
        ..config(dir.path())
    };
    let mut buffer = Buffer::open(cfg.clone()).unwrap();
    let mut dropped = 0;
    for batch in 0..40 {
        dropped += buffer
            .append(&records(batch * 3..batch * 3 + 3))
            .unwrap()
            .dropped_oldest;
        assert!(buffer.bytes() <= 2048);
    }
    assert!(dropped > 0);
    assert_eq!(buffer.dropped_total(), dropped);
    assert_eq!(
        buffer.len() + dropped,
        120,
        "every record is either kept or counted"
    );
    let kept = all_ids(&mut buffer);
    assert_eq!(
        kept,
        (dropped..120).collect::<Vec<_>>(),
        "the oldest went first"
    );
    drop(buffer);
    let mut buffer = Buffer::open(cfg).unwrap();
    assert_eq!(all_ids(&mut buffer), kept);
}

#[test]
fn drop_oldest_never_acknowledges_records_the_sink_has_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        max_bytes: 1024,
        full_policy: FullPolicy::DropOldest,
        ..config(dir.path())
    };
    let mut buffer = Buffer::open(cfg).unwrap();
    let front = |b: &Buffer| b.ahead.front().map(|r| r.id);
    buffer.append(&records(0..6)).unwrap();
    assert_eq!(ids(&buffer.peek(5).unwrap()), vec![0, 1, 2, 3, 4]);
    // While the sink sends, appends push part of that batch out.
    let mut next = 6;
    while buffer.dropped_total() == 0 {
        buffer.append(&records(next..next + 2)).unwrap();
        next += 2;
    }
    let first = front(&buffer).unwrap();
    assert!(
        (1..5).contains(&first),
        "part of the batch dropped: {first}"
    );
    let len = buffer.len();
    // The sink confirms the 5 it was given: only the survivors among them
    // are acknowledged, not the records after them it never saw.
    buffer.ack(5).unwrap();
    assert_eq!(front(&buffer), Some(5));
    assert_eq!(buffer.len(), len - (5 - first));

    // The same for a dead letter whose record was dropped meanwhile.
    let batch = ids(&buffer.peek(2).unwrap());
    let dropped = buffer.dropped_total();
    while buffer.dropped_total() == dropped {
        buffer.append(&records(next..next + 2)).unwrap();
        next += 2;
    }
    let first = front(&buffer).unwrap();
    assert!(first > batch[1], "the whole batch was dropped");
    buffer.dead_letter("refused").unwrap();
    buffer.ack(1).unwrap();
    assert_eq!(front(&buffer), Some(first), "nothing else was touched");
    assert!(!buffer.dead_letter_path().exists());
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    buffer.append(&records(0..40)).unwrap();
    let before = segment_files(dir.path());
    assert!(before.len() >= 4);
    let full_bytes = buffer.bytes();
    let on_disk: u64 = before.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(full_bytes, on_disk);

    // Acknowledging part of the first segment deletes nothing.
    buffer.ack(1).unwrap();
    assert_eq!(segment_files(dir.path()), before);
    // Acknowledging past the start of the third deletes the first two.
    let third_first: u64 = before[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    buffer.ack(third_first as usize).unwrap();
    assert_eq!(segment_files(dir.path()), before[2..].to_vec());
    assert!(buffer.bytes() < full_bytes);
    // Everything: only the active segment is kept, for the next appends.
    buffer.ack(buffer.len() as usize).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        vec![before.last().unwrap().clone()]
    );
}

#[test]
fn dead_letter_writes_a_json_line_and_advances() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    let mut binary = record(0);
    binary.payload = Bytes::from_static(&[0xFF, 0x00, 0x7F]);
    buffer.append(&[binary, record(1), record(2)]).unwrap();
    assert!(matches!(buffer.peek(3), Ok(batch) if batch.len() == 3));
    buffer.dead_letter("permanent: 400 Bad Request").unwrap();
    assert_eq!(buffer.len(), 2);
    assert_eq!(ids(&buffer.peek(1).unwrap()), vec![1]);
    buffer.dead_letter("permanent: 413").unwrap();

    let text = fs::read_to_string(buffer.dead_letter_path()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["reason"], "permanent: 400 Bad Request");
    assert_eq!(lines[0]["record"]["id"], 0);
    assert_eq!(lines[0]["record"]["destination"], "https://sink.test/in");
    assert_eq!(lines[0]["record"]["timestamp_ms"], 1_000);
    assert_eq!(lines[0]["record"]["key"]["utf8"], "k0");
    assert_eq!(lines[0]["record"]["payload"]["base64"], "/wB/");
    assert_eq!(lines[0]["record"]["headers"][0]["name"], "mqtt-topic");
    assert_eq!(
        lines[0]["record"]["headers"][0]["value"]["utf8"],
        "plant/1/temp"
    );
    assert_eq!(lines[1]["record"]["id"], 1);
    assert_eq!(lines[1]["record"]["key"], serde_json::Value::Null);
    assert_eq!(
        lines[1]["record"]["payload"]["utf8"],
        "payload of record 000001"
    );

    drop(buffer);
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(
        all_ids(&mut buffer),
        vec![2],
        "dead letters stay acknowledged"
    );
    buffer.ack(1).unwrap();
    assert!(matches!(buffer.dead_letter("x"), Err(BufferError::Empty)));
}

/// Many append/peek/ack cycles, the buffer dropped without any close (as a
/// kill -9 would) and reopened now and then: what was not acknowledged is
/// always there, in order, and acknowledged records never come back.
#[test]
fn crash_cycles_lose_nothing_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut model: VecDeque<u64> = VecDeque::new();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    // A small deterministic generator, so a failure replays.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for cycle in 0..300 {
        let count = rand(8);
        let first = buffer.next_id() + rand(3);
        let batch = records(first..first + count);
        buffer.append(&batch).unwrap();
        model.extend(first..first + count);

        let peeked = buffer.peek(rand(12) as usize).unwrap();
        let expected: Vec<u64> = model.iter().take(peeked.len()).copied().collect();
        assert_eq!(ids(&peeked), expected, "cycle {cycle}");
        let acked = rand(peeked.len() as u64 + 1) as usize;
        buffer.ack(acked).unwrap();
        model.drain(..acked);
        assert_eq!(buffer.len(), model.len() as u64);

        if rand(10) == 0 {
            let next_id = buffer.next_id();
            drop(buffer);
            buffer = Buffer::open(config(dir.path())).unwrap();
            assert_eq!(buffer.next_id(), next_id);
            assert_eq!(
                all_ids(&mut buffer),
                Vec::from(model.clone()),
                "cycle {cycle}"
            );
        }
    }
    drop(buffer);
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(all_ids(&mut buffer), Vec::from(model));
    let recovery = buffer.recovery();
    assert_eq!((recovery.torn_bytes, recovery.corrupt_records), (0, 0));
}

#[test]
fn fsync_mode_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        fsync: true,
        ..config(dir.path())
    };
    let mut buffer = Buffer::open(cfg.clone()).unwrap();
    buffer.append(&records(0..12)).unwrap();
    buffer.ack(2).unwrap();
    buffer.dead_letter("bad").unwrap();
    buffer.sync().unwrap();
    drop(buffer);
    let mut buffer = Buffer::open(cfg).unwrap();
    assert_eq!(all_ids(&mut buffer), (3..12).collect::<Vec<_>>());
}

#[test]
fn a_segment_torn_while_being_created_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..3)).unwrap();
    }
    // The crash hit after creating the next segment, before its header.
    fs::write(dir.path().join("00000000000000000003.seg"), b"SLU").unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(buffer.recovery().torn_bytes, 3);
    assert_eq!(buffer.next_id(), 3);
    buffer.append(&records(3..5)).unwrap();
    drop(buffer);
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(all_ids(&mut buffer), (0..5).collect::<Vec<_>>());
}

#[test]
fn an_untrustworthy_cursor_or_segment_version_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut buffer = Buffer::open(config(dir.path())).unwrap();
        buffer.append(&records(0..3)).unwrap();
        buffer.ack(1).unwrap();
    }
    let cursor = dir.path().join(CURSOR_FILE);
    fs::write(&cursor, b"{\"version\":1,\"acked_bel").unwrap();
    assert!(matches!(
        Buffer::open(config(dir.path())),
        Err(BufferError::CorruptCursor { .. })
    ));
    // Deleting it, as the error says, resends everything still on disk.
    fs::remove_file(&cursor).unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(all_ids(&mut buffer), vec![0, 1, 2]);
    drop(buffer);

    let segment = segment_files(dir.path()).remove(0);
    let mut data = fs::read(&segment).unwrap();
    data[8] = 9;
    fs::write(&segment, data).unwrap();
    assert!(matches!(
        Buffer::open(config(dir.path())),
        Err(BufferError::UnsupportedVersion { version: 9, .. })
    ));
}

#[test]
fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let small = BufferConfig {
        segment_bytes: 10,
        ..config(dir.path())
    };
    assert!(matches!(
        Buffer::open(small),
        Err(BufferError::InvalidConfig(_))
    ));
    let tight = BufferConfig {
        max_bytes: 100,
        ..config(dir.path())
    };
    assert!(matches!(
        Buffer::open(tight),
        Err(BufferError::InvalidConfig(_))
    ));
}

#[test]
fn a_failed_append_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    buffer.append(&records(0..2)).unwrap();
    let (bytes, files) = (buffer.bytes(), segment_files(dir.path()));
    // Records 2 and 3 still fit the first segment, record 4 needs a new
    // one, whose name is taken: the append fails halfway through.
    let blocker = dir.path().join("00000000000000000004.seg");
    fs::create_dir(&blocker).unwrap();
    let err = buffer.append(&records(2..6)).unwrap_err();
    assert!(matches!(err, BufferError::Io { op: "create", .. }), "{err}");
    assert_eq!(
        (buffer.len(), buffer.bytes(), buffer.next_id()),
        (2, bytes, 2)
    );
    assert_eq!(
        fs::metadata(&files[0]).unwrap().len(),
        bytes,
        "records 2 and 3 were cut"
    );
    assert_eq!(all_ids(&mut buffer), vec![0, 1]);

    fs::remove_dir(&blocker).unwrap();
    buffer.append(&records(2..6)).unwrap();
    assert_eq!(all_ids(&mut buffer), (0..6).collect::<Vec<_>>());
    drop(buffer);
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    assert_eq!(all_ids(&mut buffer), (0..6).collect::<Vec<_>>());
    assert_eq!(
        buffer.recovery().corrupt_records + buffer.recovery().torn_bytes,
        0
    );
}

#[test]
fn sync_covers_segments_sealed_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    for batch in 0..20 {
        buffer.append(&records(batch * 4..batch * 4 + 4)).unwrap();
        if batch == 5 {
            buffer.sync().unwrap();
            assert!(buffer.unsynced.is_empty());
        }
    }
    assert!(!buffer.unsynced.is_empty());
    buffer.ack(70).unwrap();
    buffer.append(&records(80..84)).unwrap();
    assert!(
        buffer.unsynced.len() <= buffer.segments.len(),
        "deleted segments are forgotten"
    );
    buffer.sync().unwrap();
    assert!(buffer.unsynced.is_empty());
}

#[test]
fn a_buffer_can_move_to_its_own_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Buffer>();
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(config(dir.path())).unwrap();
    buffer.append(&records(0..3)).unwrap();
    let handle = std::thread::spawn(move || {
        buffer.ack(1).unwrap();
        buffer
    });
    let mut buffer = handle.join().unwrap();
    assert_eq!(all_ids(&mut buffer), vec![1, 2]);
    assert!(format!("{buffer:?}").contains("len: 2"));
}

fn dead_letter_lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn dead_letter_files_stay_within_their_bound_keeping_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.dead_letter_max_bytes = 4096;
    let mut buffer = Buffer::open(c.clone()).unwrap();
    for i in 0..300 {
        buffer.dead_letter_record(&record(i), "bad").unwrap();
    }
    let current = buffer.dead_letter_path();
    let rotated = dir.path().join("dead-letter.1.jsonl");
    let total = fs::metadata(&current).unwrap().len() + fs::metadata(&rotated).unwrap().len();
    assert!(total <= 4096, "{total} bytes");
    assert_eq!(buffer.dead_letter_bytes(), total);
    let kept = dead_letter_lines(&rotated).len() + dead_letter_lines(&current).len();
    assert_eq!(buffer.dead_letter_discarded() + kept as u64, 300);
    let last = dead_letter_lines(&current).pop().unwrap();
    assert_eq!(last["record"]["id"], 299, "the newest line is kept");
    // Reopening knows the sizes: still bounded.
    drop(buffer);
    let mut buffer = Buffer::open(c).unwrap();
    for i in 300..400 {
        buffer.dead_letter_record(&record(i), "bad").unwrap();
    }
    let total = fs::metadata(&current).unwrap().len() + fs::metadata(&rotated).unwrap().len();
    assert!(total <= 4096, "{total} bytes after reopening");
}

#[test]
fn a_round_of_dead_letters_is_kept_as_one_by_one_within_the_bound() {
    // Written together (one sync), across rotations: the same files and
    // counts as one record at a time.
    let (one, together) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |dir: &Path| {
        let mut c = config(dir);
        c.dead_letter_max_bytes = 4096;
        Buffer::open(c).unwrap()
    };
    let (mut a, mut b) = (open(one.path()), open(together.path()));
    for i in 0..300 {
        a.dead_letter_record(&record(i), "bad").unwrap();
    }
    let round: Vec<(Record, String)> = (0..300).map(|i| (record(i), "bad".to_owned())).collect();
    for chunk in round.chunks(70) {
        b.dead_letter_records(chunk).unwrap();
    }
    for name in ["dead-letter.jsonl", "dead-letter.1.jsonl"] {
        assert_eq!(
            dead_letter_lines(&one.path().join(name)).len(),
            dead_letter_lines(&together.path().join(name)).len(),
            "{name}"
        );
    }
    assert_eq!(a.dead_letter_discarded(), b.dead_letter_discarded());
    assert_eq!(a.dead_letter_bytes(), b.dead_letter_bytes());
}

#[test]
fn discard_new_keeps_the_first_dead_letters_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.dead_letter_max_bytes = 4096;
    c.dead_letter_policy = DeadLetterPolicy::DiscardNew;
    let mut buffer = Buffer::open(c).unwrap();
    for i in 0..300 {
        buffer.dead_letter_record(&record(i), "bad").unwrap();
    }
    let lines = dead_letter_lines(&buffer.dead_letter_path());
    assert!(fs::metadata(buffer.dead_letter_path()).unwrap().len() <= 4096);
    assert_eq!(lines[0]["record"]["id"], 0);
    assert_eq!(buffer.dead_letter_discarded() + lines.len() as u64, 300);
}
