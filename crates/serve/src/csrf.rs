//! Cross-site request forgery: every state-changing request made with a credential the
//! browser sends by itself (the login cookie, a proxy's session) must carry a token that only
//! a page of this server could have given, bound to the user: HMAC-SHA256 of the user name
//! under a key drawn when the server starts. A forged request from another site cannot know
//! it; a token taken from one user is worth nothing for another.

use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// The server's key for CSRF tokens; a new one at each start (pages loaded before a restart
/// must be reloaded before their forms are sent).
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        CsrfKey(key)
    }

    /// The token of `user`'s forms.
    pub fn token(&self, user: &str) -> String {
        hmac(&self.0, format!("csrf\0{user}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `given` is `user`'s token (compared in constant time).
    pub fn check(&self, user: &str, given: &str) -> bool {
        let want = self.token(user);
        want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// HMAC-SHA256 (RFC 2104) with a 32-byte key.
fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_style_vector() {
        // RFC 4231 test case 2 uses a 4-byte key; a 32-byte key zero-padded to the block is the
        // same HMAC as the short key padded by the algorithm itself.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_are_per_user_and_per_key() {
        let k = CsrfKey::random();
        let t = k.token("alice");
        assert!(k.check("alice", &t));
        assert!(!k.check("bob", &t));
        assert!(!k.check("alice", ""));
        assert!(!CsrfKey::random().check("alice", &t));
    }
}
