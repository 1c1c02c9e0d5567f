//! Request signatures of RocketMQ's ACL, as the Java client's `AclClientRPCHook` writes
//! them and ACL 1.0 and 2.0 brokers check them: HMAC-SHA1, keyed with the secret, over the
//! values of every extFields entry but `Signature` in key order, then the body; Base64.
//!
//! The signature covers no time and no nonce, so a captured request can be replayed; a
//! server that wants more checks its own fields on top (the broker's replay window).

use base64::Engine;
use compact_str::ToCompactString;
use ring::hmac;

use crate::command::RemotingCommand;

/// The extFields keys the signature travels in.
pub const ACCESS_KEY: &str = "AccessKey";
pub const SIGNATURE: &str = "Signature";
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// Rocketry's replay protection: when the request was signed (ms since the epoch), and a
/// value never used twice. Both are signed with the rest, so neither can be changed.
pub const TIMESTAMP: &str = "Timestamp";
pub const NONCE: &str = "Nonce";

/// A user's access key and secret, as the client's `SessionCredentials` holds them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the secret, so credentials can sit in logged structs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

fn key(secret: &str) -> hmac::Key {
    // SHA-1 is what every RocketMQ client signs with; HMAC-SHA1 is still a sound MAC.
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes())
}

/// The Base64 signature of `command` under `secret`.
pub fn signature(command: &RemotingCommand, secret: &str) -> String {
    let tag = hmac::sign(&key(secret), &content(command));
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The bytes signed: the values in key order (Java's TreeMap; keys are ASCII, so byte
/// order is the same), `Signature` left out, then the body.
fn content(command: &RemotingCommand) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(command.body.len() + 256);
    for (name, value) in &command.ext_fields {
        if name != SIGNATURE {
            bytes.extend_from_slice(value.as_bytes());
        }
    }
    bytes.extend_from_slice(&command.body);
    bytes
}

/// Whether `command` carries a valid signature under `secret`, compared in constant time.
pub fn verify(command: &RemotingCommand, secret: &str) -> bool {
    let Some(given) = command.ext_fields.get(SIGNATURE) else {
        return false;
    };
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(given) else {
        return false;
    };
    hmac::verify(&key(secret), &content(command), &tag).is_ok()
}

/// Adds [`TIMESTAMP`] (now) and a random [`NONCE`], for brokers that refuse replays; call it
/// before [`sign`]. Other brokers sign and check them like any other field.
pub fn add_replay_fields(command: &mut RemotingCommand) {
    use ring::rand::SecureRandom;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source failed");
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    command
        .ext_fields
        .insert(TIMESTAMP.into(), now.to_compact_string());
    command.ext_fields.insert(NONCE.into(), nonce.into());
}

/// Adds `AccessKey` and `Signature` to a request, as `AclClientRPCHook` does; call it
/// after the header and body are final.
pub fn sign(command: &mut RemotingCommand, credentials: &Credentials) {
    command
        .ext_fields
        .insert(ACCESS_KEY.into(), credentials.access_key.as_str().into());
    let signature = signature(command, &credentials.secret_key);
    command
        .ext_fields
        .insert(SIGNATURE.into(), signature.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;

    /// A SEND_MESSAGE_V2 as the Java 5.5.0 client's `AclClientRPCHook` signed it (printed by
    /// running the hook on these fields and body, access key `rocketmq2`, secret `12345678`).
    fn java_signed() -> RemotingCommand {
        RemotingCommand::request(RequestCode::SendMessageV2, &())
            .with_ext_field("b", "TopicTest")
            .with_ext_field("a", "producerGroup")
            .with_ext_field("i", "KEYS\u{1}k1\u{2}")
            .with_body(&b"hello body"[..])
    }

    #[test]
    fn signs_as_the_java_client_does() {
        let mut command = java_signed();
        let credentials = Credentials {
            access_key: "rocketmq2".into(),
            secret_key: "12345678".into(),
        };
        sign(&mut command, &credentials);
        assert_eq!(
            command.ext_fields[SIGNATURE],
            "gpYEQkV0kEwYvLkNJfD5PvjzXU0="
        );
        assert_eq!(command.ext_fields[ACCESS_KEY], "rocketmq2");
        assert!(verify(&command, "12345678"));
    }

    #[test]
    fn a_changed_field_body_or_secret_fails_verification() {
        let credentials = Credentials {
            access_key: "rocketmq2".into(),
            secret_key: "12345678".into(),
        };
        let mut signed = java_signed();
        sign(&mut signed, &credentials);
        assert!(!verify(&signed, "12345679"));

        let mut topic = signed.clone();
        topic.ext_fields.insert("b".into(), "OtherTopic".into());
        assert!(!verify(&topic, "12345678"));

        let body = signed.clone().with_body(&b"hello bodY"[..]);
        assert!(!verify(&body, "12345678"));

        let mut unsigned = java_signed();
        assert!(!verify(&unsigned, "12345678"));
        unsigned
            .ext_fields
            .insert(SIGNATURE.into(), "not base64!".into());
        assert!(!verify(&unsigned, "12345678"));
    }

    #[test]
    fn replay_fields_are_fresh_each_time_and_signed() {
        let credentials = Credentials {
            access_key: "ak".into(),
            secret_key: "sk".into(),
        };
        let mut one = java_signed();
        let mut two = java_signed();
        add_replay_fields(&mut one);
        add_replay_fields(&mut two);
        assert_ne!(one.ext_fields[NONCE], two.ext_fields[NONCE]);
        assert_eq!(one.ext_fields[NONCE].len(), 32);
        assert!(one.ext_fields[TIMESTAMP].parse::<u64>().unwrap() > 1_700_000_000_000);
        sign(&mut one, &credentials);
        assert!(verify(&one, "sk"));
        one.ext_fields.insert(TIMESTAMP.into(), "0".into());
        assert!(!verify(&one, "sk"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let credentials = Credentials {
            access_key: "ak".into(),
            secret_key: "s3cr3t".into(),
        };
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }
}
