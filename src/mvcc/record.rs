//! The value stored for one version of a key in the `kv` column family.
//!
//! ```text
//! put:       0x00 | varint create_rev | varint version | varint lease | value...
//! tombstone: 0x01
//! ```
//!
//! The key and the mod revision are in the `kv` key itself.

use bytes::Buf;
use prost::encoding::{decode_varint, encode_varint};

use crate::error::{Error, Result};

const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

/// One decoded version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Put {
        create_rev: i64,
        version: i64,
        lease: i64,
        value: &'a [u8],
    },
    Tombstone,
}

impl<'a> Record<'a> {
    pub fn decode(mut b: &'a [u8]) -> Result<Record<'a>> {
        let corrupt = || Error::internal("corrupt mvcc record");
        if b.is_empty() {
            return Err(corrupt());
        }
        let kind = b.get_u8();
        match kind {
            TOMBSTONE => Ok(Record::Tombstone),
            PUT => {
                let create_rev = decode_varint(&mut b).map_err(|_| corrupt())? as i64;
                let version = decode_varint(&mut b).map_err(|_| corrupt())? as i64;
                let lease = decode_varint(&mut b).map_err(|_| corrupt())? as i64;
                Ok(Record::Put {
                    create_rev,
                    version,
                    lease,
                    value: b,
                })
            }
            _ => Err(corrupt()),
        }
    }
}

/// Encodes a live version.
pub fn encode_put(create_rev: i64, version: i64, lease: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 30 + value.len());
    out.push(PUT);
    encode_varint(create_rev as u64, &mut out);
    encode_varint(version as u64, &mut out);
    encode_varint(lease as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// Encodes a deletion marker.
pub fn encode_tombstone() -> Vec<u8> {
    vec![TOMBSTONE]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let b = encode_put(3, 7, -1, b"value\x00x");
        assert_eq!(
            Record::decode(&b).unwrap(),
            Record::Put {
                create_rev: 3,
                version: 7,
                lease: -1,
                value: b"value\x00x"
            }
        );
        let b = encode_put(i64::MAX, 1, 0, b"");
        assert!(matches!(
            Record::decode(&b).unwrap(),
            Record::Put {
                create_rev: i64::MAX,
                version: 1,
                lease: 0,
                value: b""
            }
        ));
        assert_eq!(
            Record::decode(&encode_tombstone()).unwrap(),
            Record::Tombstone
        );
    }

    #[test]
    fn corrupt_records_are_errors() {
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(b"\x07").is_err());
        assert!(Record::decode(b"\x00\xff").is_err());
    }
}
