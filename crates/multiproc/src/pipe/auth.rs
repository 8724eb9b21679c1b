//! Python's authentication handshake (`multiprocessing.connection.deliver_challenge` and
//! `answer_challenge`): each side proves it knows the `authkey` with an HMAC of a random
//! challenge, without sending the key.
//!
//! ```text
//! deliverer                                   answerer
//!   #CHALLENGE# + message          ──────▶
//!                                  ◀──────    digest = HMAC(authkey, message)
//!   #WELCOME# or #FAILURE#         ──────▶
//! ```
//!
//! A [`Listener`](super::Listener) delivers, then answers; a [`Client`](super::Client)
//! answers, then delivers (both sides are checked). Two dialects, both spoken here:
//!
//! - CPython up to 3.11: `message` is 20 random bytes, `digest` the raw 16-byte HMAC-MD5.
//! - CPython 3.12 and later: `message` is `{sha256}` + 40 random bytes and `digest` is
//!   `{sha256}` + the HMAC-SHA256 of the whole message (prefix included); a reply without a
//!   prefix is taken as legacy HMAC-MD5, as 3.12 does for old clients.
//!
//! We deliver the 3.12 challenge: a 3.11 peer answers it with HMAC-MD5 over all of it, which
//! we accept (as 3.12 does). We answer either. Every message of the handshake is read with a
//! limit of 256 bytes, as in Python.

use hmac::{Hmac, Mac};

use super::{Connection, RecvError, Stop};
use crate::codec::Codec;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::Deadline;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge we deliver (CPython 3.12's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// The shortest challenge accepted (CPython 3.11's 20 bytes).
const LEGACY_MESSAGE_LENGTH: usize = 20;
/// The length of a legacy (unprefixed) HMAC-MD5 reply.
const MD5_DIGEST_LENGTH: usize = 16;
/// Longest digest name in a `{name}` prefix that CPython allows (`sha3_256`).
const MAX_DIGEST_NAME: usize = 8;
/// Longest handshake message read (CPython's `recv_bytes(256)`).
const MAX_HANDSHAKE_MESSAGE: usize = 256;

fn failed(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::AuthenticationFailed, why)
}

/// The HMAC of `message` with `key` under the named digest, or `None` for a digest we do not
/// speak.
fn mac(digest: &str, key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        m.update(message);
        m.finalize().into_bytes().to_vec()
    }
    Some(match digest {
        "md5" => run::<Hmac<md5::Md5>>(key, message),
        "sha256" => run::<Hmac<sha2::Sha256>>(key, message),
        "sha384" => run::<Hmac<sha2::Sha384>>(key, message),
        _ => return None,
    })
}

/// Splits a CPython 3.12 message into its digest name and payload: `("", message)` for a
/// legacy one (16 or 20 bytes, no prefix), `None` when it is neither.
fn digest_and_payload(message: &[u8]) -> Option<(&str, &[u8])> {
    if message.len() == LEGACY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LENGTH {
        return Some(("", message));
    }
    if message.first() != Some(&b'{') {
        return None;
    }
    let end = message
        .iter()
        .take(MAX_DIGEST_NAME + 2)
        .position(|&b| b == b'}')?;
    let name = std::str::from_utf8(&message[1..end]).ok()?;
    Some((name, &message[end + 1..]))
}

/// Constant-time equality of two byte strings of equal length (no early exit on the first
/// difference: a timing side channel on the digest).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn recv<C: Codec>(conn: &Connection<C>, deadline: Deadline, step: &str) -> Result<Vec<u8>> {
    conn.recv_message(Some(MAX_HANDSHAKE_MESSAGE), deadline)
        .map(|m| m.0)
        .map_err(|s| match s {
            Stop::Timeout => Error::new(
                ErrorKind::Timeout,
                format!("authentication handshake timed out waiting for the {step}"),
            ),
            Stop::Error(RecvError::TooLong { len, .. }) => failed(format!(
                "authentication handshake: the {step} is {len} bytes long, over the limit of \
                 {MAX_HANDSHAKE_MESSAGE}: not a multiprocessing peer"
            )),
            Stop::Error(RecvError::Eof) => Error::new(
                ErrorKind::Disconnected,
                format!(
                    "the peer closed the connection during the authentication handshake \
                     (waiting for the {step}; does it use the same authkey setting?)"
                ),
            ),
            Stop::Error(e) => e.into(),
        })
}

fn send<C: Codec>(conn: &Connection<C>, bytes: &[u8], deadline: Deadline) -> Result<()> {
    conn.send_message(bytes, &[], false, deadline)
        .map_err(|s| match s {
            Stop::Timeout => Error::new(
                ErrorKind::Timeout,
                "authentication handshake timed out sending",
            ),
            Stop::Error(e) => e.into(),
        })
}

/// Challenges the peer to prove it knows `authkey` (CPython's `deliver_challenge`).
pub(crate) fn deliver_challenge<C: Codec>(
    conn: &Connection<C>,
    authkey: &[u8],
    deadline: Deadline,
) -> Result<()> {
    let mut random = [0u8; MESSAGE_LENGTH];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::os("cannot make a random challenge", e.into()))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    send(conn, &[CHALLENGE, &message].concat(), deadline)?;
    let response = recv(conn, deadline, "reply to our challenge")?;
    let ok = match digest_and_payload(&response) {
        Some((name, reply)) => {
            let name = if name.is_empty() { "md5" } else { name };
            mac(name, authkey, &message).is_some_and(|want| same(&want, reply))
        }
        None => false,
    };
    if ok {
        send(conn, WELCOME, deadline)
    } else {
        // Best effort: the peer learns why before we hang up.
        let _ = send(conn, FAILURE, deadline);
        Err(failed(
            "the peer's reply to our challenge was wrong: it has another authkey (or none)",
        ))
    }
}

/// Proves to the peer that we know `authkey` (CPython's `answer_challenge`).
pub(crate) fn answer_challenge<C: Codec>(
    conn: &Connection<C>,
    authkey: &[u8],
    deadline: Deadline,
) -> Result<()> {
    let message = recv(conn, deadline, "challenge")?;
    let Some(message) = message.strip_prefix(CHALLENGE) else {
        return Err(failed(
            "protocol error in the authentication handshake: expected a challenge (does the \
             peer use an authkey?)",
        ));
    };
    if message.len() < LEGACY_MESSAGE_LENGTH {
        return Err(failed(format!(
            "the peer's challenge is too short ({} bytes)",
            message.len()
        )));
    }
    let reply = match digest_and_payload(message) {
        Some(("", _)) => mac("md5", authkey, message).expect("md5 is spoken"),
        Some((name, _)) => {
            let digest = mac(name, authkey, message).ok_or_else(|| {
                failed(format!(
                    "the peer's challenge asks for digest {name:?}, which we do not speak \
                     (md5, sha256, sha384)"
                ))
            })?;
            [format!("{{{name}}}").as_bytes(), &digest].concat()
        }
        None => {
            return Err(failed(
                "the peer's challenge has neither a legacy length nor a {digest} prefix",
            ))
        }
    };
    send(conn, &reply, deadline)?;
    let verdict = recv(conn, deadline, "verdict on our reply")?;
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(failed(
            "the peer rejected our reply to its challenge: it has another authkey",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_match_known_answers() {
        // RFC 2104 / RFC 4231 test vectors.
        let md5 = mac("md5", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            md5,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
        let sha = mac("sha256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(sha[..4], [0x5b, 0xdc, 0xc1, 0x46]);
        assert!(mac("sha3_256", b"k", b"m").is_none());
    }

    #[test]
    fn message_dialects() {
        assert_eq!(digest_and_payload(&[1; 20]), Some(("", &[1u8; 20][..])));
        assert_eq!(digest_and_payload(&[1; 16]), Some(("", &[1u8; 16][..])));
        let m = b"{sha256}0123456789";
        assert_eq!(digest_and_payload(m), Some(("sha256", &b"0123456789"[..])));
        assert_eq!(digest_and_payload(b"{waytoolongname}abc"), None);
        assert_eq!(digest_and_payload(b"no prefix here at all"), None);
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
