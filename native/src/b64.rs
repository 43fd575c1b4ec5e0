//! Standard base64 (RFC 4648, padded) for the sketches' packed float arrays.
//!
//! `decode` reads what `encode` (and Python's `base64.b64encode`) writes, ~4x faster than
//! binascii: the live judge decodes every reservoir of every delta it merges.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const INVALID: u8 = 0xFF;
const PAD: u8 = 0xFE;

const fn decode_table() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = PAD;
    table
}

static DECODE: [u8; 256] = decode_table();

/// `data` in base64 with padding (what `base64.b64encode` writes).
pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for chunk in &mut chunks {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        out.extend_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize],
                ALPHABET[(n >> 12) as usize & 63],
            ]);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
            ]);
            out.push(b'=');
        }
        _ => {}
    }
    // Every byte pushed is from the ASCII alphabet or '='.
    String::from_utf8(out).expect("base64 is ASCII")
}

/// How many bytes `text` holds if shaped as `encode` writes it (whole quads, at most two
/// '=' at the end); None otherwise.
pub fn decoded_len(text: &[u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pads = match text {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    Some(text.len() / 4 * 3 - pads)
}

/// Writes the bytes of `text` into `out` (`decoded_len(text)` long) if `text` is what `encode`
/// writes (standard alphabet, '=' only padding the last quad, its unused bits zero); None for
/// anything else, which the caller leaves to binascii (its strict mode's rules moved between
/// CPython releases).
pub fn decode_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    let Some((body, last)) = text.split_last_chunk::<4>() else {
        return Some(()); // empty
    };
    let (whole, tail) = out.split_at_mut(body.len() / 4 * 3);
    for (quad, into) in body.chunks_exact(4).zip(whole.chunks_exact_mut(3)) {
        let n = quad_bits(quad.try_into().ok()?)?;
        into.copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let (n, unused) = match *last {
        [a, b, b'=', b'='] => (quad_bits(&[a, b, b'A', b'A'])?, 0xFFFF),
        [a, b, c, b'='] => (quad_bits(&[a, b, c, b'A'])?, 0xFF),
        _ => (quad_bits(last)?, 0),
    };
    if n & unused != 0 {
        return None; // unused bits set: not what encode writes
    }
    let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    tail.copy_from_slice(&bytes[..tail.len()]);
    Some(())
}

/// The 24 bits of four alphabet characters (None if any is not one).
#[inline]
fn quad_bits(quad: &[u8; 4]) -> Option<u32> {
    let [a, b, c, d] = quad.map(|byte| DECODE[byte as usize]);
    if (a | b | c | d) & 0xC0 != 0 {
        return None; // INVALID, or '=' where data belongs
    }
    Some(u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d))
}

#[cfg(test)]
mod tests {
    use super::{decode_into, decoded_len, encode};

    fn decode(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0; decoded_len(text)?];
        decode_into(text, &mut out).map(|()| out)
    }

    #[test]
    fn round_trips_every_length() {
        for length in 0_usize..64 {
            let data: Vec<u8> = (0..length).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&data);
            assert_eq!(text.len(), length.div_ceil(3) * 4);
            assert_eq!(decode(text.as_bytes()), Some(data));
        }
    }

    #[test]
    fn matches_known_encodings() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(decode(b"Zm9vYg=="), Some(b"foob".to_vec()));
        assert_eq!(decode(b"Zm8="), Some(b"fo".to_vec()));
    }

    #[test]
    fn leaves_anything_encode_does_not_write() {
        for odd in [
            &b"Zh=="[..],
            b"Zm9=",
            b"Zg=",
            &b"Zg="[..],
            b"Zg==Zg==",
            b"=Zg=",
            b"Z===",
            b"Zg=g",
            b"Zm9v YmFy",
            b"Zm9v\nYmFy",
            b"Zm9-",
            b"====",
        ] {
            assert!(decode(odd).is_none(), "{}", String::from_utf8_lossy(odd));
        }
    }
}
