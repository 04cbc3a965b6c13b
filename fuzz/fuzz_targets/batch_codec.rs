//! The record-batch codec over arbitrary bytes — what a storage node reads back from
//! disk and what it takes from a producer's binary body once encoded, or from a leader.
//!
//! Properties: nothing panics; a batch that parses passes `verify_checksum`, holds
//! `record_count` records at dense offsets from its base, and its records, encoded
//! again, parse to the same records. The input is tried as is (the CRC check) and with
//! its CRC fixed up (so the fuzzer reaches the record framing behind it).

#![no_main]

use bytes::Bytes;
use fjord_protocol::codec::{self, Batch, BatchBuilder, BATCH_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let Ok(batch) = Batch::parse(Bytes::copy_from_slice(bytes)) else { return };
    assert!(codec::verify_checksum(bytes).is_ok(), "a batch that parses passes its checksum");
    let records: Vec<_> = batch.records().collect();
    assert_eq!(records.len() as u64, u64::from(batch.record_count()));
    for (r, offset) in records.iter().zip(batch.base_offset()..) {
        assert_eq!(r.offset, offset, "records sit at dense offsets from the base");
    }
    assert_eq!(batch.next_offset(), batch.base_offset() + u64::from(batch.record_count()));
    let _ = batch.ext();
    let mut again = BatchBuilder::default();
    for r in &records {
        again.push(&r.clone().into_record()).expect("a record read from a batch encodes again");
    }
    let again = Batch::parse(again.finish().expect("finish")).expect("an encoded batch parses");
    let back: Vec<_> = again.records().map(|r| r.into_record()).collect();
    let orig: Vec<_> = records.into_iter().map(|r| r.into_record()).collect();
    assert_eq!(back, orig, "re-encoded records read back the same");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= BATCH_HEADER_LEN {
        let mut fixed = data.to_vec();
        let crc = crc32c(&fixed[17..]);
        fixed[13..17].copy_from_slice(&crc.to_be_bytes());
        check(&fixed);
    }
});

/// CRC-32C (Castagnoli), bit by bit: the fuzz crate does not need a fast one.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
