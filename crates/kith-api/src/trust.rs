//! The roots a node reports it trusts (`GET /v1/node?trusts=HEX,HEX`):
//! the SHA-256 pins of the SubjectPublicKeyInfo of each root in its
//! `ca.pem`. During a root rotation the CA waits for every node to trust
//! both roots before it activates the new one.

/// Most pins a node reports (a bundle holds two roots during a rotation).
pub const MAX_TRUSTS: usize = 8;

/// The query parameter's name.
pub const TRUSTS_PARAM: &str = "trusts";

/// `trusts=HEX,HEX` for `pins`: each pin 64 lowercase hex digits. Empty
/// pins give an empty query (nothing to report).
pub fn trusts_query(pins: &[[u8; 32]]) -> String {
    if pins.is_empty() {
        return String::new();
    }
    let list: Vec<String> = pins.iter().map(hex::encode).collect();
    format!("{TRUSTS_PARAM}={}", list.join(","))
}

/// Parse the value of `trusts=`: 1 to [`MAX_TRUSTS`] pins, comma separated,
/// each exactly 64 lowercase hex digits. The error says what is wrong.
pub fn parse_trusts(value: &str) -> Result<Vec<[u8; 32]>, String> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_TRUSTS {
        return Err(format!(
            "{TRUSTS_PARAM}= lists {} pins; at most {MAX_TRUSTS}",
            items.len()
        ));
    }
    items
        .iter()
        .map(|item| {
            let ok = item.len() == 64
                && item
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let mut pin = [0u8; 32];
            match ok && hex::decode_to_slice(item, &mut pin).is_ok() {
                true => Ok(pin),
                false => Err(format!(
                    "{TRUSTS_PARAM}=: {:?} is not a SHA-256 pin (64 lowercase hex digits)",
                    item.chars().take(80).collect::<String>()
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let pins = [[0xabu8; 32], [0x01u8; 32]];
        let q = trusts_query(&pins);
        let v = q.strip_prefix("trusts=").expect("the parameter's name");
        assert_eq!(parse_trusts(v).expect("own output parses"), pins);
        assert_eq!(trusts_query(&[]), "");
        let one = "ab".repeat(32);
        for bad in [
            String::new(),
            "ab".repeat(31),
            "AB".repeat(32),
            format!("{one},"),
            format!("{one},,{one}"),
            "zz".repeat(32),
            [one.as_str(); MAX_TRUSTS + 1].join(","),
        ] {
            assert!(parse_trusts(&bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_trusts(&[one.as_str(); MAX_TRUSTS].join(","))
                .expect("eight pins")
                .len(),
            MAX_TRUSTS
        );
    }
}
