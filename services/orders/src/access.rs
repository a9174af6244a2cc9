//! Who may see an order: its customer, holding the order's access token, or an operator
//! holding the admin token. Tokens are bearer secrets, so they are compared without
//! revealing, through timing, how much of a guess was right.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes in an order's access token (256 bits; the issue asks for at least 128).
const TOKEN_BYTES: usize = 32;

/// A new order access token: 256 bits from the thread's CSPRNG (seeded by the operating
/// system), hex-encoded.
pub fn new_access_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether a presented secret equals the expected one, in time that depends on neither
/// their contents nor their lengths: both are hashed first, and the digests (always 32
/// bytes) are compared without an early exit.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    presented
        .iter()
        .zip(expected.iter())
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

/// The token of an `Authorization: Bearer <token>` header value, if it is one.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let (a, b) = (new_access_token(), new_access_token());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_match_only_when_equal_whatever_the_lengths() {
        assert!(secrets_match("s3cret-token", "s3cret-token"));
        assert!(!secrets_match("s3cret-token", "s3cret-tokeN"));
        assert!(!secrets_match("s3cret", "s3cret-token"));
        assert!(!secrets_match("", "s3cret-token"));
    }

    #[test]
    fn only_bearer_credentials_are_taken() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
