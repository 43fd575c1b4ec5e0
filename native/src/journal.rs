//! The join journal's frame (`streams.journal_table.encode_journal`, format 2): the magic, the
//! count (uint32), the keys' lengths (uint32 each), the values' lengths (int64 each, -1 for a
//! delete), the keys, the values; little-endian.

/// One change: a key and its new value (None: deleted).
pub type Change<'a> = (&'a [u8], Option<&'a [u8]>);

/// The frame's length, or None when a count or key length does not fit its uint32.
pub fn framed_len(magic: &[u8], changes: &[Change<'_>]) -> Option<usize> {
    u32::try_from(changes.len()).ok()?;
    let mut total = magic.len() + 4 + 12 * changes.len();
    for (key, value) in changes {
        u32::try_from(key.len()).ok()?;
        total += key.len() + value.map_or(0, <[u8]>::len);
    }
    Some(total)
}

/// Writes the frame into `out`, exactly `framed_len` bytes long.
pub fn write_frame(magic: &[u8], changes: &[Change<'_>], out: &mut [u8]) {
    let count = changes.len();
    let (head, rest) = out.split_at_mut(magic.len() + 4);
    head[..magic.len()].copy_from_slice(magic);
    head[magic.len()..].copy_from_slice(&(count as u32).to_le_bytes());
    let (key_lengths, rest) = rest.split_at_mut(4 * count);
    let (value_lengths, mut body) = rest.split_at_mut(8 * count);
    for (i, (key, value)) in changes.iter().enumerate() {
        key_lengths[4 * i..4 * i + 4].copy_from_slice(&(key.len() as u32).to_le_bytes());
        let length = value.map_or(-1, |value| value.len() as i64);
        value_lengths[8 * i..8 * i + 8].copy_from_slice(&length.to_le_bytes());
    }
    let pieces = changes
        .iter()
        .map(|(key, _)| *key)
        .chain(changes.iter().filter_map(|(_, value)| *value));
    for piece in pieces {
        let (into, after) = body.split_at_mut(piece.len());
        into.copy_from_slice(piece);
        body = after;
    }
}

#[cfg(test)]
mod tests {
    use super::{framed_len, write_frame, Change};

    #[test]
    fn frames_keys_then_values() {
        let changes: Vec<Change<'_>> = vec![(b"a", Some(b"xy")), (b"bc", None)];
        let length = framed_len(b"M", &changes).unwrap();
        let mut out = vec![0; length];
        write_frame(b"M", &changes, &mut out);
        let mut expected = b"M".to_vec();
        expected.extend(2u32.to_le_bytes());
        expected.extend(1u32.to_le_bytes());
        expected.extend(2u32.to_le_bytes());
        expected.extend(2i64.to_le_bytes());
        expected.extend((-1i64).to_le_bytes());
        expected.extend(b"abcxy");
        assert_eq!(out, expected);
    }

    #[test]
    fn frames_nothing() {
        let mut out = vec![0; framed_len(b"MM", &[]).unwrap()];
        write_frame(b"MM", &[], &mut out);
        assert_eq!(out, b"MM\0\0\0\0");
    }
}
