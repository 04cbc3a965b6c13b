//! The byte layouts nodes exchange and store besides batches: length-prefixed frames
//! (replica fetch answers, produce forwarding), partition store names, offset keys,
//! stored integers and epoch histories, and `__consumer_offsets` keys.
//!
//! Properties: nothing panics; frames that decode encode back to the same bytes; every
//! other layout that decodes encodes back to what was decoded.

#![no_main]

use bytes::Bytes;
use fjord_protocol::codec::{self, OffsetsKey, StoreName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = codec::decode_frames(Bytes::copy_from_slice(data)) {
        let mut out = Vec::new();
        codec::encode_frames(frames.iter().map(|f| &f[..]), &mut out).expect("frames encode again");
        assert_eq!(out, data, "frames round-trip");
    }
    if let Ok(offset) = codec::decode_offset_key(data) {
        assert_eq!(codec::offset_key(offset).as_slice(), data, "offset keys round-trip");
    }
    if let Some(v) = codec::decode_u64(data) {
        assert_eq!(codec::decode_u64(&codec::encode_u64(v)), Some(v));
    }
    if let Some(epochs) = codec::decode_epochs(data) {
        assert_eq!(codec::decode_epochs(&codec::encode_epochs(&epochs)), Some(epochs));
    }
    if let Ok(key) = OffsetsKey::decode(data) {
        assert_eq!(OffsetsKey::decode(&key.encode()).ok(), Some(key), "offsets keys round-trip");
    }
    if let Some(name) = std::str::from_utf8(data).ok().and_then(StoreName::parse) {
        assert_eq!(StoreName::parse(&name.encode()), Some(name), "store names round-trip");
    }
});
