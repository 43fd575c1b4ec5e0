//! The join expiry's scan: the event time that leads each join entry.

/// The leading integer of a join entry laid out as `[<int>,...` or `[<int>]`, and whether more
/// follows it (a comma); None for any other layout (the caller reads that entry in full).
pub fn leading_time(entry: &[u8]) -> Option<(i64, bool)> {
    let body = entry.strip_prefix(b"[")?;
    let (negative, digits) = match body.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let length = digits
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if length == 0 || length > 18 {
        return None; // 18 digits cannot overflow an i64
    }
    let more = match &digits[length..] {
        [b']'] => false,
        [b',', ..] => true,
        _ => return None,
    };
    let magnitude = digits[..length]
        .iter()
        .fold(0_i64, |value, digit| value * 10 + i64::from(digit - b'0'));
    Some((if negative { -magnitude } else { magnitude }, more))
}

#[cfg(test)]
mod tests {
    use super::leading_time;

    #[test]
    fn reads_the_joiner_layouts() {
        assert_eq!(leading_time(b"[5]"), Some((5, false)));
        assert_eq!(leading_time(b"[-7,\"m\"]"), Some((-7, true)));
        assert_eq!(
            leading_time(b"[1700000000000000,\"m\",null]"),
            Some((1_700_000_000_000_000, true))
        );
    }

    #[test]
    fn refuses_anything_else() {
        for entry in [
            &b"[7.0]"[..],
            b"[5]x",
            b"[]",
            b"[ 5]",
            b"5",
            b"[+5]",
            b"[1234567890123456789]",
            b"[-]",
        ] {
            assert_eq!(
                leading_time(entry),
                None,
                "{:?}",
                String::from_utf8_lossy(entry)
            );
        }
    }
}
