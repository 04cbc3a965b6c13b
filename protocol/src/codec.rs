//! Every byte layout Fjord writes, in one place.
//!
//! # Record batch (version 1)
//! Records are appended, replicated and stored as batches. All integers big-endian.
//!
//! ```text
//! offset size field
//!  0      8   base_offset     assigned by the leader on append
//!  8      4   leader_epoch    stamped by the leader on append
//! 12      1   magic           = 1
//! 13      4   crc             CRC-32C of bytes [17..end)
//! 17      4   record_count    >= 1; record i has offset base_offset + i
//! 21      8   first_timestamp ms
//! 29      8   max_timestamp   ms
//! 37      …   records
//!
//! record:
//!   8  timestamp ms (i64)
//!   4  key length (i32, -1 = no key), then the key bytes
//!   4  value length (i32, -1 = no value: a tombstone), then the value bytes
//!   4  header count (u32), then per header:
//!        2 name length (u16), name (UTF-8), 4 value length (u32), value
//! ```
//!
//! As in Kafka's v2 batches, the CRC does not cover `base_offset` and `leader_epoch`,
//! so the leader stamps them in place without re-hashing the batch.
//!
//! # Record batch (version 2): a producer extension
//! A batch a producer wants deduplicated has magic 2 and, between the header and the
//! records, a [`ProducerExt`] (covered by the CRC):
//!
//! ```text
//! 37  2  ext_length (u16)
//! 39  …  ext: flags (u8: 1 idempotency key, 2 producer session), default_timestamp (i64:
//!        the time stamped on records that had none),
//!        [idempotency] key_length (u8, 1..=255), key, fingerprint (16 bytes), routed_with (u32:
//!        the topic's partition count the request was routed with),
//!        [session] producer_id (u64), producer_epoch (u32), first_sequence (u32)
//! …      records
//! ```
//!
//! # Stores and RocksDB keys
//! Each partition replica is one store (a RocksDB column family) named by
//! [`StoreName`]: `p.{topic_id}.{partition}`, so a re-created topic of the same name never
//! sees the old one's data. Its keys are [`offset_key`] (the batch's base offset,
//! big-endian so byte order is numeric order) → the encoded batch.
//!
//!
//! Beside its batches a store keeps a few values under [`MetaKey`]s: the log start
//! offset and the size in bytes ([`encode_u64`]), and the leader-epoch history
//! ([`encode_epochs`]: 12-byte `(epoch u32, start offset u64)` entries, ascending). The
//! RocksDB engine keeps them in one shared column family under [`meta_key`]:
//! `{store}\0{key}`.
//!
//! The same column family holds each store's producer state, keys
//! `{store}\0` + [`StateKey`]: `i:{idempotency key}` → [`IdempotencyEntry`],
//! `e:{written_ms u64}{idempotency key}` → nothing (expiry order), `p:{producer_id u64}` →
//! [`ProducerEntry`]. None of them can be mistaken for a [`MetaKey`] name.
//!
//! # Frames
//! Batches travel between nodes as `[u32 length][bytes]` frames ([`encode_frames`]).
//!
//! # `__consumer_offsets` keys
//! Records of the offsets topic are keyed by [`OffsetsKey`], a JSON array:
//! `["group", group]` for a group's metadata, `["offset", group, topic, partition]` for a
//! committed offset. The topic is compacted, so the last record per key is the state.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

pub const MAGIC: u8 = 1;
/// A batch with a [`ProducerExt`].
pub const MAGIC_EXT: u8 = 2;
pub const BATCH_HEADER_LEN: usize = 37;
/// Longest idempotency key (the IETF httpapi draft's `Idempotency-Key` is "a string";
/// Fjord bounds it so index entries stay small).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const CRC_START: usize = 17;
/// Fixed bytes of one record besides key, value and headers.
pub const RECORD_OVERHEAD: usize = 8 + 4 + 4 + 4;
/// Fixed bytes of one header besides its name and value.
pub const HEADER_OVERHEAD: usize = 2 + 4;

/// Why bytes are not a valid batch or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("batch is {0} bytes, shorter than its {BATCH_HEADER_LEN}-byte header")]
    TooShort(usize),
    #[error("unknown batch magic {0}")]
    BadMagic(u8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("a batch holds at least one record")]
    Empty,
    #[error("record {index} is truncated or malformed")]
    BadRecord { index: u32 },
    #[error("batch has {0} trailing bytes after its last record")]
    TrailingBytes(usize),
    #[error("header name of record {index} is not UTF-8")]
    HeaderName { index: u32 },
    #[error("offset key must be 8 bytes, got {0}")]
    BadKey(usize),
    #[error("a record field is larger than the encoding allows")]
    FieldTooLarge,
    #[error("truncated length-prefixed frame")]
    BadFrame,
    #[error("the batch's offsets run past the largest offset")]
    OffsetOverflow,
    #[error("not a `__consumer_offsets` key: {0}")]
    BadOffsetsKey(String),
    #[error("malformed producer extension: {0}")]
    BadExt(&'static str),
}

/// An idempotency key and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Idempotency {
    /// 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes.
    pub key: Vec<u8>,
    /// A hash of the request: the same key with another request is refused.
    pub fingerprint: [u8; 16],
    /// The topic's partition count the request's records were routed with.
    pub routed_with: u32,
}

/// A producer session's place in its sequence (Kafka's producer id, epoch, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session {
    pub producer_id: u64,
    pub epoch: u32,
    /// The sequence number of the batch's first record; the others follow on.
    pub first_sequence: u32,
}

/// What a producer attaches to a batch so that a retry of it cannot be written twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerExt {
    pub idempotency: Option<Idempotency>,
    pub session: Option<Session>,
    /// The time (ms) stamped on the batch's records that came without a timestamp: a
    /// replayed answer reports the original times.
    pub default_timestamp: i64,
}

impl ProducerExt {
    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(48);
        let flags = u8::from(self.idempotency.is_some()) | (u8::from(self.session.is_some()) << 1);
        out.push(flags);
        out.extend_from_slice(&self.default_timestamp.to_be_bytes());
        if let Some(i) = &self.idempotency {
            if i.key.is_empty() || i.key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(CodecError::BadExt("the idempotency key must be 1 to 255 bytes"));
            }
            out.push(i.key.len() as u8);
            out.extend_from_slice(&i.key);
            out.extend_from_slice(&i.fingerprint);
            out.extend_from_slice(&i.routed_with.to_be_bytes());
        }
        if let Some(p) = &self.session {
            out.extend_from_slice(&p.producer_id.to_be_bytes());
            out.extend_from_slice(&p.epoch.to_be_bytes());
            out.extend_from_slice(&p.first_sequence.to_be_bytes());
        }
        Ok(out)
    }

    fn decode(b: &[u8]) -> Result<Self, CodecError> {
        let bad = CodecError::BadExt;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], CodecError> {
            let r = b.get(at..at + n).ok_or(bad("truncated"))?;
            at += n;
            Ok(r)
        };
        let flags = take(1)?[0];
        if flags & !3 != 0 {
            return Err(bad("unknown flags"));
        }
        let default_timestamp = read_u64(take(8)?, 0) as i64;
        let idempotency = if flags & 1 != 0 {
            let len = usize::from(take(1)?[0]);
            if len == 0 {
                return Err(bad("empty idempotency key"));
            }
            let key = take(len)?.to_vec();
            let mut fingerprint = [0u8; 16];
            fingerprint.copy_from_slice(take(16)?);
            let routed_with = read_u32(take(4)?, 0);
            Some(Idempotency { key, fingerprint, routed_with })
        } else {
            None
        };
        let session = if flags & 2 != 0 {
            let producer_id = read_u64(take(8)?, 0);
            let epoch = read_u32(take(4)?, 0);
            let first_sequence = read_u32(take(4)?, 0);
            Some(Session { producer_id, epoch, first_sequence })
        } else {
            None
        };
        if at != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self { idempotency, session, default_timestamp })
    }
}

/// One header: a name and opaque bytes. Names may repeat, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Bytes,
}

/// A record to append: the producer's view, without an offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes this record takes inside an encoded batch.
    pub fn encoded_len(&self) -> usize {
        RECORD_OVERHEAD
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self.headers.iter().map(|h| HEADER_OVERHEAD + h.name.len() + h.value.len()).sum::<usize>()
    }
}

/// Builds one encoded batch. Offsets and epoch are left zero for the leader to stamp.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    magic: u8,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(256)
    }
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + bytes);
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self { buf, count: 0, first_timestamp: 0, max_timestamp: i64::MIN, magic: MAGIC }
    }

    /// A builder of a version-2 batch carrying `ext`.
    pub fn with_ext(bytes: usize, ext: &ProducerExt) -> Result<Self, CodecError> {
        let encoded = ext.encode()?;
        let len = u16::try_from(encoded.len()).map_err(|_| CodecError::FieldTooLarge)?;
        let mut b = Self::with_capacity(bytes + 2 + encoded.len());
        b.buf.put_u16(len);
        b.buf.put_slice(&encoded);
        b.magic = MAGIC_EXT;
        Ok(b)
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, record: &Record) -> Result<(), CodecError> {
        self.push_parts(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            record.headers.iter().map(|h| (h.name.as_str(), &h.value[..])),
        )
    }

    /// Appends a record from borrowed parts (no intermediate [`Record`]).
    pub fn push_parts<'a>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), CodecError> {
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.buf.put_i64(timestamp);
        put_optional(&mut self.buf, key)?;
        put_optional(&mut self.buf, value)?;
        self.buf.put_u32(u32::try_from(headers.len()).map_err(|_| CodecError::FieldTooLarge)?);
        for (name, value) in headers {
            self.buf.put_u16(u16::try_from(name.len()).map_err(|_| CodecError::FieldTooLarge)?);
            self.buf.put_slice(name.as_bytes());
            self.buf.put_u32(u32::try_from(value.len()).map_err(|_| CodecError::FieldTooLarge)?);
            self.buf.put_slice(value);
        }
        self.count = self.count.checked_add(1).ok_or(CodecError::FieldTooLarge)?;
        Ok(())
    }

    /// Finishes the batch. Fails on an empty builder.
    pub fn finish(mut self) -> Result<Bytes, CodecError> {
        if self.count == 0 {
            return Err(CodecError::Empty);
        }
        self.buf[12] = self.magic;
        self.buf[17..21].copy_from_slice(&self.count.to_be_bytes());
        self.buf[21..29].copy_from_slice(&self.first_timestamp.to_be_bytes());
        self.buf[29..37].copy_from_slice(&self.max_timestamp.to_be_bytes());
        let crc = crc32c::crc32c(&self.buf[CRC_START..]);
        self.buf[13..17].copy_from_slice(&crc.to_be_bytes());
        Ok(self.buf.freeze())
    }
}

fn put_optional(buf: &mut BytesMut, bytes: Option<&[u8]>) -> Result<(), CodecError> {
    match bytes {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(i32::try_from(b.len()).map_err(|_| CodecError::FieldTooLarge)?);
            buf.put_slice(b);
        }
    }
    Ok(())
}

/// Overwrites the leader-assigned fields of an encoded batch (not covered by the CRC).
pub fn stamp(batch: &mut [u8], base_offset: u64, leader_epoch: u32) -> Result<(), CodecError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(CodecError::TooShort(batch.len()));
    }
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[8..12].copy_from_slice(&leader_epoch.to_be_bytes());
    Ok(())
}

/// A validated, encoded batch. Cheap to clone; records are decoded lazily, zero-copy.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    bytes: Bytes,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("base_offset", &self.base_offset())
            .field("records", &self.record_count())
            .field("leader_epoch", &self.leader_epoch())
            .finish()
    }
}

/// Checks an encoded batch's length, magic and CRC — what a stored batch read back is
/// checked for before it is served (bit rot, a torn or misdirected write): the CRC
/// covers every byte but the leader-assigned offset and epoch. [`Batch::parse`] does
/// this and validates every record's framing too.
pub fn verify_checksum(bytes: &[u8]) -> Result<(), CodecError> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(CodecError::TooShort(bytes.len()));
    }
    if bytes[12] != MAGIC && bytes[12] != MAGIC_EXT {
        return Err(CodecError::BadMagic(bytes[12]));
    }
    let stored = read_u32(bytes, 13);
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if stored != computed {
        return Err(CodecError::BadCrc { stored, computed });
    }
    Ok(())
}

impl Batch {
    /// Validates header, CRC and every record's framing.
    pub fn parse(bytes: Bytes) -> Result<Self, CodecError> {
        verify_checksum(&bytes)?;
        let batch = Self { bytes };
        let count = batch.record_count();
        if count == 0 {
            return Err(CodecError::Empty);
        }
        if batch.base_offset().checked_add(u64::from(count)).is_none() {
            return Err(CodecError::OffsetOverflow);
        }
        let mut pos = batch.records_start()?;
        if batch.bytes[12] == MAGIC_EXT {
            ProducerExt::decode(&batch.bytes[BATCH_HEADER_LEN + 2..pos])?;
        }
        for index in 0..count {
            pos = skip_record(&batch.bytes, pos, index)?;
        }
        if pos != batch.bytes.len() {
            return Err(CodecError::TrailingBytes(batch.bytes.len() - pos));
        }
        Ok(batch)
    }

    pub fn base_offset(&self) -> u64 {
        read_u64(&self.bytes, 0)
    }

    /// Where the records begin: after the header, and after the extension of a
    /// version-2 batch.
    fn records_start(&self) -> Result<usize, CodecError> {
        if self.bytes[12] != MAGIC_EXT {
            return Ok(BATCH_HEADER_LEN);
        }
        let len = self.bytes.get(BATCH_HEADER_LEN..BATCH_HEADER_LEN + 2).ok_or(CodecError::BadExt("truncated"))?;
        let end = BATCH_HEADER_LEN + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if end > self.bytes.len() {
            return Err(CodecError::BadExt("truncated"));
        }
        Ok(end)
    }

    /// The producer extension of a version-2 batch (validated by [`Batch::parse`]).
    pub fn ext(&self) -> Option<ProducerExt> {
        let end = self.records_start().ok()?;
        (end > BATCH_HEADER_LEN).then(|| ProducerExt::decode(&self.bytes[BATCH_HEADER_LEN + 2..end]).ok()).flatten()
    }

    pub fn leader_epoch(&self) -> u32 {
        read_u32(&self.bytes, 8)
    }

    pub fn record_count(&self) -> u32 {
        read_u32(&self.bytes, 17)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset() + u64::from(self.record_count()) - 1
    }

    /// One past the last offset.
    pub fn next_offset(&self) -> u64 {
        self.base_offset() + u64::from(self.record_count())
    }

    pub fn first_timestamp(&self) -> i64 {
        read_u64(&self.bytes, 21) as i64
    }

    pub fn max_timestamp(&self) -> i64 {
        read_u64(&self.bytes, 29) as i64
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The records, in offset order.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter { batch: self, pos: self.records_start().unwrap_or(self.bytes.len()), index: 0 }
    }
}

/// One batch holding `records` (consecutive offsets from `base`) with the leader epoch
/// and the record timestamps they were written with: how compaction rewrites a batch as
/// its runs of survivors, and how a follower keeps the part of a batch past its log end.
pub fn rebuild(records: &[RecordView], base: u64, leader_epoch: u32) -> Result<Batch, CodecError> {
    rebuild_with(records, base, leader_epoch, None)
}

/// [`rebuild`], keeping a producer extension (a follower keeping the part of a batch past
/// its log end keeps what dedupes it).
pub fn rebuild_with(
    records: &[RecordView],
    base: u64,
    leader_epoch: u32,
    ext: Option<&ProducerExt>,
) -> Result<Batch, CodecError> {
    let size = |r: &RecordView| {
        RECORD_OVERHEAD
            + r.key.as_ref().map_or(0, Bytes::len)
            + r.value.as_ref().map_or(0, Bytes::len)
            + r.headers.iter().map(|h| HEADER_OVERHEAD + h.name.len() + h.value.len()).sum::<usize>()
    };
    let capacity = records.iter().map(size).sum();
    let mut builder = match ext {
        Some(ext) => BatchBuilder::with_ext(capacity, ext)?,
        None => BatchBuilder::with_capacity(capacity),
    };
    for r in records {
        builder.push_parts(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|h| (h.name.as_str(), &h.value[..])),
        )?;
    }
    let mut buf = BytesMut::from(&builder.finish()?[..]);
    stamp(&mut buf, base, leader_epoch)?;
    Batch::parse(buf.freeze())
}

/// A decoded record inside a [`Batch`]; key, value and header values share its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl RecordView {
    pub fn into_record(self) -> Record {
        Record { timestamp: self.timestamp, key: self.key, value: self.value, headers: self.headers }
    }
}

pub struct RecordIter<'a> {
    batch: &'a Batch,
    pos: usize,
    index: u32,
}

impl Iterator for RecordIter<'_> {
    type Item = RecordView;

    fn next(&mut self) -> Option<RecordView> {
        if self.index >= self.batch.record_count() {
            return None;
        }
        // Framing was validated in `Batch::parse`, so `decode_record` cannot fail here;
        // a failure would end the iteration rather than panic.
        let (record, next) = decode_record(&self.batch.bytes, self.pos)?;
        let view = RecordView {
            offset: self.batch.base_offset() + u64::from(self.index),
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        };
        self.pos = next;
        self.index += 1;
        Some(view)
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// A bounds-checked reader over a batch buffer.
struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let end = self.pos.checked_add(n)?;
        if end > self.buf.len() {
            return None;
        }
        let r = self.pos..end;
        self.pos = end;
        Some(r)
    }

    fn u16(&mut self) -> Option<u16> {
        let r = self.take(2)?;
        Some(u16::from_be_bytes([self.buf[r.start], self.buf[r.start + 1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let r = self.take(4)?;
        Some(read_u32(self.buf, r.start))
    }

    fn i64(&mut self) -> Option<i64> {
        let r = self.take(8)?;
        Some(read_u64(self.buf, r.start) as i64)
    }

    fn optional(&mut self) -> Option<Option<Bytes>> {
        let len = self.u32()? as i32;
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        let r = self.take(len)?;
        Some(Some(self.buf.slice(r)))
    }
}

fn decode_record(buf: &Bytes, pos: usize) -> Option<(Record, usize)> {
    let mut c = Cursor { buf, pos };
    let timestamp = c.i64()?;
    let key = c.optional()?;
    let value = c.optional()?;
    let count = c.u32()?;
    // Each header takes at least HEADER_OVERHEAD bytes: refuse counts the buffer cannot hold
    // before reserving memory for them.
    if (count as usize).saturating_mul(HEADER_OVERHEAD) > buf.len() - c.pos {
        return None;
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_len = c.u16()? as usize;
        let name = c.take(name_len)?;
        let name = std::str::from_utf8(&buf[name]).ok()?.to_owned();
        let value_len = c.u32()? as usize;
        let value = c.take(value_len)?;
        headers.push(Header { name, value: buf.slice(value) });
    }
    Some((Record { timestamp, key, value, headers }, c.pos))
}

fn skip_record(buf: &Bytes, pos: usize, index: u32) -> Result<usize, CodecError> {
    let mut c = Cursor { buf, pos };
    let framed = (|| {
        c.i64()?;
        c.optional()?;
        c.optional()?;
        let count = c.u32()?;
        for _ in 0..count {
            let name_len = c.u16()? as usize;
            let name = c.take(name_len)?;
            if std::str::from_utf8(&buf[name]).is_err() {
                return Some(Err(CodecError::HeaderName { index }));
            }
            let value_len = c.u32()? as usize;
            c.take(value_len)?;
        }
        Some(Ok(()))
    })();
    match framed {
        Some(Ok(())) => Ok(c.pos),
        Some(Err(e)) => Err(e),
        None => Err(CodecError::BadRecord { index }),
    }
}

/// The RocksDB key of the batch whose base offset is `offset`.
pub fn offset_key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

pub fn decode_offset_key(key: &[u8]) -> Result<u64, CodecError> {
    let arr: [u8; 8] = key.try_into().map_err(|_| CodecError::BadKey(key.len()))?;
    Ok(u64::from_be_bytes(arr))
}

/// The key of `store`'s batch at `base_offset` in the shared log column family:
/// `{store}\0{offset, u64 big-endian}`, so each store's batches sort together, by offset
/// (store names hold no NUL, and the NUL ends every name: no store's keys fall inside
/// another's range).
pub fn batch_key(store: &str, base_offset: u64) -> Vec<u8> {
    let mut k = meta_prefix(store);
    k.extend_from_slice(&offset_key(base_offset));
    k
}

/// The `[start, end)` range of every batch key of `store`.
pub fn batch_range(store: &str) -> (Vec<u8>, Vec<u8>) {
    meta_range(store)
}

/// The base offset of a [`batch_key`] of `store`.
pub fn decode_batch_key(store: &str, key: &[u8]) -> Result<u64, CodecError> {
    let offset = key
        .strip_prefix(store.as_bytes())
        .and_then(|rest| rest.strip_prefix(&[0u8]))
        .ok_or(CodecError::BadKey(key.len()))?;
    decode_offset_key(offset)
}

/// The first byte of every [`store_key`]: 0xFF begins no UTF-8 string, so no store's
/// `{store}\0…` metadata key is one.
pub const STORE_KEY_PREFIX: u8 = 0xff;

/// The key in the metadata column family that records that `store` exists.
pub fn store_key(store: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + 1);
    k.push(STORE_KEY_PREFIX);
    k.extend_from_slice(store.as_bytes());
    k
}

/// The store a [`store_key`] names.
pub fn decode_store_key(key: &[u8]) -> Result<&str, CodecError> {
    key.strip_prefix(&[STORE_KEY_PREFIX])
        .and_then(|name| std::str::from_utf8(name).ok())
        .ok_or(CodecError::BadKey(key.len()))
}

/// A per-store metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaKey {
    /// The log start offset (u64): batches below it are gone.
    LogStart,
    /// The bytes of all stored batches (u64).
    Size,
    /// The leader-epoch history ([`encode_epochs`]).
    Epochs,
    /// The last high watermark checkpointed (u64; Kafka's
    /// `replication-offset-checkpoint`): a lower bound of the committed records.
    HighWatermark,
}

impl MetaKey {
    pub const ALL: [MetaKey; 4] = [MetaKey::LogStart, MetaKey::Size, MetaKey::Epochs, MetaKey::HighWatermark];

    pub const fn as_str(self) -> &'static str {
        match self {
            MetaKey::LogStart => "log_start",
            MetaKey::Size => "size",
            MetaKey::Epochs => "epochs",
            MetaKey::HighWatermark => "high_watermark",
        }
    }
}

/// The RocksDB key of `store`'s value `key` in the shared metadata column family.
pub fn meta_key(store: &str, key: MetaKey) -> Vec<u8> {
    let mut k = meta_prefix(store);
    k.extend_from_slice(key.as_str().as_bytes());
    k
}

/// The `[start, end)` key range of every metadata value of `store`.
pub fn meta_range(store: &str) -> (Vec<u8>, Vec<u8>) {
    let start = meta_prefix(store);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    (start, end)
}

fn meta_prefix(store: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + 12);
    k.extend_from_slice(store.as_bytes());
    k.push(0);
    k
}

pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A leader-epoch history: `(epoch, first offset of that epoch)`, ascending.
pub fn encode_epochs(epochs: &[(u32, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(epochs.len() * 12);
    for (e, o) in epochs {
        out.extend_from_slice(&e.to_be_bytes());
        out.extend_from_slice(&o.to_be_bytes());
    }
    out
}

/// The history [`encode_epochs`] wrote; `None` when the length is not a multiple of 12.
pub fn decode_epochs(bytes: &[u8]) -> Option<Vec<(u32, u64)>> {
    if !bytes.len().is_multiple_of(12) {
        return None;
    }
    Some(bytes.chunks_exact(12).map(|c| (read_u32(c, 0), read_u64(c, 4))).collect())
}

/// A key of a store's producer state (after the store's `{store}\0` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey<'a> {
    /// The entry of an idempotency key.
    Idempotency(&'a [u8]),
    /// A producer session's state on this partition.
    Producer(u64),
}

impl StateKey<'_> {
    pub const IDEMPOTENCY_PREFIX: &'static [u8] = b"i:";
    pub const PRODUCER_PREFIX: &'static [u8] = b"p:";

    pub fn encode(&self) -> Vec<u8> {
        match self {
            StateKey::Idempotency(key) => [Self::IDEMPOTENCY_PREFIX, key].concat(),
            StateKey::Producer(id) => [Self::PRODUCER_PREFIX, &id.to_be_bytes()[..]].concat(),
        }
    }
}

/// What a partition remembers of one idempotency key: the batch it wrote, and whether a
/// retry is the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyEntry {
    pub fingerprint: [u8; 16],
    pub base_offset: u64,
    pub record_count: u32,
    pub default_timestamp: i64,
    pub routed_with: u32,
    /// When it was written (ms): the entry is good for the topic's idempotency window.
    pub written_ms: i64,
}

impl IdempotencyEntry {
    const LEN: usize = 16 + 8 + 4 + 8 + 4 + 8;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.record_count.to_be_bytes());
        out.extend_from_slice(&self.default_timestamp.to_be_bytes());
        out.extend_from_slice(&self.routed_with.to_be_bytes());
        out.extend_from_slice(&self.written_ms.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&b[..16]);
        Some(Self {
            fingerprint,
            base_offset: read_u64(b, 16),
            record_count: read_u32(b, 24),
            default_timestamp: read_u64(b, 28) as i64,
            routed_with: read_u32(b, 36),
            written_ms: read_u64(b, 40) as i64,
        })
    }
}

/// One batch a producer session wrote, kept to answer a retry of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionBatch {
    pub first_sequence: u32,
    pub record_count: u32,
    pub base_offset: u64,
    pub default_timestamp: i64,
}

/// A producer session's state on one partition: its epoch, the last sequence written,
/// and its last few batches (Kafka keeps five).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: u32,
    /// The sequence of the last record written; `None` before the first.
    pub last_sequence: Option<u32>,
    pub last_write_ms: i64,
    /// Oldest first.
    pub recent: Vec<SessionBatch>,
}

impl ProducerEntry {
    /// How many batches are kept to answer retries.
    pub const RECENT: usize = 5;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 9 + 8 + 1 + self.recent.len() * 24);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        match self.last_sequence {
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&s.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.last_write_ms.to_be_bytes());
        out.push(self.recent.len() as u8);
        for b in &self.recent {
            out.extend_from_slice(&b.first_sequence.to_be_bytes());
            out.extend_from_slice(&b.record_count.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.default_timestamp.to_be_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let r = b.get(at..at + n)?;
            at += n;
            Some(r)
        };
        let epoch = read_u32(take(4)?, 0);
        let last_sequence = match take(1)?[0] {
            0 => None,
            1 => Some(read_u32(take(4)?, 0)),
            _ => return None,
        };
        let last_write_ms = read_u64(take(8)?, 0) as i64;
        let n = usize::from(take(1)?[0]);
        let mut recent = Vec::with_capacity(n);
        for _ in 0..n {
            let r = take(24)?;
            recent.push(SessionBatch {
                first_sequence: read_u32(r, 0),
                record_count: read_u32(r, 4),
                base_offset: read_u64(r, 8),
                default_timestamp: read_u64(r, 16) as i64,
            });
        }
        (at == b.len()).then_some(Self { epoch, last_sequence, last_write_ms, recent })
    }
}

/// The RocksDB key of `store`'s producer-state value `key` in the metadata column family.
pub fn state_key(store: &str, key: &StateKey<'_>) -> Vec<u8> {
    let mut k = meta_prefix(store);
    k.extend_from_slice(&key.encode());
    k
}

/// The RocksDB key prefix of `store`'s producer-state keys starting with `prefix`.
pub fn state_prefix(store: &str, prefix: &[u8]) -> Vec<u8> {
    let mut k = meta_prefix(store);
    k.extend_from_slice(prefix);
    k
}

/// Concatenates byte strings as `[u32 length][bytes]` frames (batches in a fetch answer).
pub fn encode_frames<'a>(parts: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    for p in parts {
        out.extend_from_slice(&u32::try_from(p.len()).map_err(|_| CodecError::FieldTooLarge)?.to_be_bytes());
        out.extend_from_slice(p);
    }
    Ok(())
}

/// Splits `[u32 length][bytes]` frames, zero-copy.
pub fn decode_frames(mut buf: Bytes) -> Result<Vec<Bytes>, CodecError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err(CodecError::BadFrame);
        }
        let len = read_u32(&buf, 0) as usize;
        if buf.len() - 4 < len {
            return Err(CodecError::BadFrame);
        }
        let _ = buf.split_to(4);
        out.push(buf.split_to(len));
    }
    Ok(out)
}

/// The store of one partition replica: `p.{topic_id}.{partition}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName {
    /// The topic's id (a hex UUID: no `.`), not its name.
    pub topic_id: String,
    pub partition: u32,
}

impl StoreName {
    const PREFIX: &'static str = "p.";

    pub fn new(topic_id: impl Into<String>, partition: u32) -> Self {
        Self { topic_id: topic_id.into(), partition }
    }

    /// The name as the engine stores it.
    pub fn encode(&self) -> String {
        format!("{}{}.{}", Self::PREFIX, self.topic_id, self.partition)
    }

    /// The partition store `name` is, or `None` for any other store name.
    pub fn parse(name: &str) -> Option<Self> {
        let (topic_id, partition) = name.strip_prefix(Self::PREFIX)?.rsplit_once('.')?;
        if topic_id.is_empty() || topic_id.contains('.') || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { topic_id: topic_id.to_owned(), partition: partition.parse().ok()? })
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OffsetsKey {
    /// `["group", group]`: the group's generation, members and ownership.
    Group { group: String },
    /// `["offset", group, topic, partition]`: a committed offset.
    Offset { group: String, tp: crate::names::TopicPartition },
}

impl OffsetsKey {
    pub fn encode(&self) -> Vec<u8> {
        let json = match self {
            Self::Group { group } => serde_json::json!(["group", group]),
            Self::Offset { group, tp } => serde_json::json!(["offset", group, tp.topic, tp.partition]),
        };
        json.to_string().into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let bad = |why: &str| CodecError::BadOffsetsKey(why.to_owned());
        let parts: Vec<serde_json::Value> = serde_json::from_slice(bytes).map_err(|_| bad("not a JSON array"))?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).ok_or_else(|| bad("a part is not a string"));
        match parts.as_slice() {
            [kind, group] if kind == "group" => Ok(Self::Group { group: text(group)? }),
            [kind, group, topic, partition] if kind == "offset" => {
                let partition = partition
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or_else(|| bad("the partition is not a u32"))?;
                Ok(Self::Offset { group: text(group)?, tp: crate::names::TopicPartition::new(text(topic)?, partition) })
            }
            _ => Err(bad("unknown kind or length")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn store_names_round_trip_and_other_names_are_not_partitions() {
        let n = StoreName::new("3f2a9c", 12);
        assert_eq!(n.encode(), "p.3f2a9c.12");
        assert_eq!(StoreName::parse("p.3f2a9c.12"), Some(n));
        for other in
            ["default", "p.", "p.abc", "p..1", "p.a.b.1", "p.abc.x", "p.abc.-1", "q.abc.1", "p.abc.99999999999"]
        {
            assert_eq!(StoreName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn producer_extensions_round_trip_and_damage_is_refused() {
        let ext = ProducerExt {
            idempotency: Some(Idempotency { key: b"req-1".to_vec(), fingerprint: [7; 16], routed_with: 3 }),
            session: Some(Session { producer_id: 9, epoch: 2, first_sequence: 40 }),
            default_timestamp: 1_700_000_000_000,
        };
        for ext in [ext.clone(), ProducerExt { session: None, ..ext.clone() }, ProducerExt { idempotency: None, ..ext }]
        {
            let mut b = BatchBuilder::with_ext(16, &ext).expect("builder");
            b.push(&record(5, Some(b"k"), Some(b"v"), &[("h", b"1")])).expect("push");
            b.push(&record(6, None, None, &[])).expect("push");
            let mut bytes = BytesMut::from(&b.finish().expect("finish")[..]);
            stamp(&mut bytes, 10, 1).expect("stamp");
            let batch = Batch::parse(bytes.freeze()).expect("parse");
            assert_eq!(batch.ext(), Some(ext.clone()));
            let offsets: Vec<u64> = batch.records().map(|r| r.offset).collect();
            assert_eq!(offsets, [10, 11]);
            let kept: Vec<RecordView> = batch.records().skip(1).collect();
            assert_eq!(rebuild_with(&kept, 11, 1, Some(&ext)).expect("rebuild").ext(), Some(ext.clone()));
            assert_eq!(rebuild(&kept, 11, 1).expect("rebuild").ext(), None);
        }
        let plain = encode(&[record(1, None, Some(b"v"), &[])]);
        assert_eq!(Batch::parse(plain).expect("v1").ext(), None, "a version-1 batch has none");
        let long = ProducerExt {
            idempotency: Some(Idempotency { key: vec![b'x'; 256], fingerprint: [0; 16], routed_with: 1 }),
            ..ProducerExt::default()
        };
        assert!(BatchBuilder::with_ext(0, &long).is_err());
        // A damaged extension (flags with an unknown bit), CRC fixed up: refused.
        let mut b = BatchBuilder::with_ext(8, &ProducerExt::default()).expect("builder");
        b.push(&record(1, None, Some(b"v"), &[])).expect("push");
        let mut bad = BytesMut::from(&b.finish().expect("finish")[..]);
        bad[39] = 0x80;
        let crc = crc32c::crc32c(&bad[CRC_START..]);
        bad[13..17].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(Batch::parse(bad.freeze()), Err(CodecError::BadExt(_))));
    }

    #[test]
    fn producer_state_layouts_round_trip_and_sort_expiry_by_time() {
        let e = IdempotencyEntry {
            fingerprint: [3; 16],
            base_offset: 77,
            record_count: 2,
            default_timestamp: -5,
            routed_with: 6,
            written_ms: 1_700_000_000_000,
        };
        assert_eq!(IdempotencyEntry::decode(&e.encode()), Some(e));
        assert_eq!(IdempotencyEntry::decode(&[0; 3]), None);
        let p = ProducerEntry {
            epoch: 4,
            last_sequence: Some(41),
            last_write_ms: 9,
            recent: vec![SessionBatch { first_sequence: 40, record_count: 2, base_offset: 10, default_timestamp: 8 }],
        };
        assert_eq!(ProducerEntry::decode(&p.encode()), Some(p.clone()));
        let fresh = ProducerEntry { last_sequence: None, recent: vec![], ..p };
        assert_eq!(ProducerEntry::decode(&fresh.encode()), Some(fresh));
        assert_eq!(ProducerEntry::decode(&[0, 0, 0, 1, 2]), None);

        for key in [StateKey::Idempotency(b"k"), StateKey::Producer(1)] {
            let full = state_key("p.a.0", &key);
            let (start, end) = meta_range("p.a.0");
            assert!(start <= full && full < end, "dropped with its store");
            assert!(MetaKey::ALL.iter().all(|m| meta_key("p.a.0", *m) != full));
        }
    }

    #[test]
    fn meta_values_and_keys() {
        let history = [(1u32, 0u64), (4, 17), (9, u64::MAX)];
        assert_eq!(decode_epochs(&encode_epochs(&history)), Some(history.to_vec()));
        assert_eq!(decode_epochs(&[0; 13]), None);
        assert_eq!(decode_u64(&encode_u64(42)), Some(42));
        assert_eq!(decode_u64(&[1, 2]), None);
        assert_eq!(meta_key("p.a.0", MetaKey::Size), b"p.a.0\0size");
        let (start, end) = meta_range("p.a.0");
        for key in MetaKey::ALL {
            let k = meta_key("p.a.0", key);
            assert!(start <= k && k < end);
            // Another store's keys are outside, even one whose name extends this one.
            let other = meta_key("p.a.01", key);
            assert!(!(start <= other && other < end));
        }
    }

    #[test]
    fn offsets_keys_keep_their_stored_bytes_and_round_trip() {
        // The bytes earlier versions wrote (serde_json of a tuple), so stored groups load.
        let g = OffsetsKey::Group { group: "billing".into() };
        assert_eq!(g.encode(), br#"["group","billing"]"#);
        let o = OffsetsKey::Offset { group: "billing".into(), tp: crate::names::TopicPartition::new("orders", 3) };
        assert_eq!(o.encode(), br#"["offset","billing","orders",3]"#);
        for k in [g, o] {
            assert_eq!(OffsetsKey::decode(&k.encode()), Ok(k));
        }
        for bad in
            [&b"nope"[..], b"[]", br#"["group"]"#, br#"["group",1]"#, br#"["offset","g","t",-1]"#, br#"["x","g"]"#]
        {
            assert!(OffsetsKey::decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn record(ts: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Record {
        Record {
            timestamp: ts,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(n, v)| Header { name: (*n).to_owned(), value: Bytes::copy_from_slice(v) })
                .collect(),
        }
    }

    fn encode(records: &[Record]) -> Bytes {
        let mut b = BatchBuilder::default();
        for r in records {
            b.push(r).expect("push");
        }
        b.finish().expect("finish")
    }

    #[test]
    fn round_trips_records_and_stamped_fields() {
        let records = vec![
            record(5, Some(b"k"), Some(b"v"), &[("h", b"1"), ("h", b"2")]),
            record(3, None, None, &[]),
            record(9, Some(b""), Some(&[0, 255, 1]), &[("x", b"")]),
        ];
        let mut bytes = BytesMut::from(&encode(&records)[..]);
        stamp(&mut bytes, 1_000, 7).expect("stamp");
        let batch = Batch::parse(bytes.freeze()).expect("parse");
        assert_eq!(batch.base_offset(), 1_000);
        assert_eq!(batch.leader_epoch(), 7);
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.last_offset(), 1_002);
        assert_eq!(batch.first_timestamp(), 5);
        assert_eq!(batch.max_timestamp(), 9);
        let back: Vec<_> = batch.records().collect();
        assert_eq!(back.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1_000, 1_001, 1_002]);
        assert_eq!(back.into_iter().map(RecordView::into_record).collect::<Vec<_>>(), records);
    }

    #[test]
    fn encoded_len_matches_the_encoding() {
        let r = record(1, Some(b"key"), Some(b"value"), &[("name", b"val")]);
        assert_eq!(encode(std::slice::from_ref(&r)).len(), BATCH_HEADER_LEN + r.encoded_len());
    }

    #[test]
    fn rejects_corruption() {
        let good = encode(&[record(1, Some(b"k"), Some(b"v"), &[])]);
        assert!(matches!(Batch::parse(good.slice(..10)), Err(CodecError::TooShort(10))));
        let mut flipped = BytesMut::from(&good[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(Batch::parse(flipped.freeze()), Err(CodecError::BadCrc { .. })));
        let mut magic = BytesMut::from(&good[..]);
        magic[12] = 9;
        assert_eq!(Batch::parse(magic.freeze()), Err(CodecError::BadMagic(9)));
        assert_eq!(BatchBuilder::default().finish(), Err(CodecError::Empty));
    }

    #[test]
    fn rejects_a_record_count_the_bytes_do_not_hold() {
        let good = encode(&[record(1, None, Some(b"v"), &[])]);
        let mut lying = BytesMut::from(&good[..]);
        lying[17..21].copy_from_slice(&2u32.to_be_bytes());
        let crc = crc32c::crc32c(&lying[CRC_START..]);
        lying[13..17].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(Batch::parse(lying.freeze()), Err(CodecError::BadRecord { index: 1 }));
    }

    #[test]
    fn frames_round_trip_and_reject_truncation() {
        let mut out = Vec::new();
        encode_frames([&b"ab"[..], b"", b"xyz"], &mut out).expect("encode");
        let parts = decode_frames(Bytes::from(out.clone())).expect("decode");
        assert_eq!(parts, vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"xyz")]);
        assert_eq!(decode_frames(Bytes::from(out[..out.len() - 1].to_vec())), Err(CodecError::BadFrame));
        assert_eq!(decode_frames(Bytes::from_static(&[0, 0])), Err(CodecError::BadFrame));
    }

    #[test]
    fn offset_keys_sort_numerically() {
        let offsets = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX];
        for pair in offsets.windows(2) {
            assert!(offset_key(pair[0]) < offset_key(pair[1]));
            assert_eq!(decode_offset_key(&offset_key(pair[1])), Ok(pair[1]));
        }
        assert_eq!(decode_offset_key(b"short"), Err(CodecError::BadKey(5)));
    }

    #[test]
    fn batch_keys_sort_by_store_then_offset_and_stay_inside_their_store() {
        let (a, b) = ("p.t.1", "p.t.10");
        assert!(batch_key(a, u64::MAX) < batch_key(b, 0), "store `p.t.1` ends before `p.t.10` begins");
        assert!(batch_key(a, 255) < batch_key(a, 256), "big-endian: numeric order");
        let (start, end) = batch_range(a);
        for k in [batch_key(a, 0), batch_key(a, u64::MAX)] {
            assert!(start <= k && k < end);
        }
        assert!(batch_key(b, 0) >= end, "another store's keys are outside the range");
        assert_eq!(decode_batch_key(a, &batch_key(a, 42)), Ok(42));
        assert_eq!(decode_batch_key(b, &batch_key(a, 42)), Err(CodecError::BadKey(14)));
        assert_eq!(decode_store_key(&store_key(a)), Ok(a));
        assert!(decode_store_key(&meta_key(a, MetaKey::Size)).is_err(), "a metadata key is no store key");
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50)),
            proptest::collection::vec(("[a-z]{0,5}", proptest::collection::vec(any::<u8>(), 0..5)), 0..3),
        )
            .prop_map(|(timestamp, key, value, headers)| Record {
                timestamp,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers.into_iter().map(|(name, v)| Header { name, value: Bytes::from(v) }).collect(),
            })
    }

    proptest! {
        #[test]
        fn any_records_round_trip(records in proptest::collection::vec(arb_record(), 1..20), base in any::<u32>()) {
            let mut bytes = BytesMut::from(&encode(&records)[..]);
            stamp(&mut bytes, u64::from(base), 1).expect("stamp");
            let batch = Batch::parse(bytes.freeze()).expect("parse");
            let back: Vec<Record> = batch.records().map(RecordView::into_record).collect();
            prop_assert_eq!(back, records);
        }

        #[test]
        fn parse_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Batch::parse(Bytes::from(bytes));
        }

        #[test]
        fn offset_key_order_is_numeric_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), offset_key(a).cmp(&offset_key(b)));
        }
    }
}
