//! The auth cache: sessions a CustomKeyCheck plugin returned, kept in the bridge's store (so a shared
//! store serves several gateway instances) under their ID-extractor session id, in the store's
//! [`Namespace::AuthCache`]: no plugin can write there, so none can plant a session for a credential. An entry is used only
//! while the session's `id_extractor_deadline` (unix seconds, set by the plugin) is in the future; the
//! store expires it at that moment too.
//!
//! An entry is `<deadline>:<base64 of the serialized SessionState>`: a hit checks the deadline and
//! hands the session bytes on without decoding or re-encoding them.

use std::time::Duration;

use base64::Engine as _;
use coprocess_proto::{Message, SessionState};

use super::push_session_id;
use crate::store::{Namespace, Store};

/// What a store key starts with; the session id follows.
pub const KEY_PREFIX: &str = "id-extractor-session:";

/// The store key of a session id (in [`Namespace::AuthCache`]).
pub fn key(session_id: &str) -> String {
    format!("{KEY_PREFIX}{session_id}")
}

const NS: Namespace = Namespace::AuthCache;

/// The store key of an extracted value, kept by a caller that reuses it: the same credential met
/// again (same org, hash function and value) is not hashed again. Holds the last value it was
/// given (a credential) until the next one replaces it.
#[derive(Default)]
pub struct StoreKey {
    org_id: String,
    hash_key_function: Option<String>,
    value: String,
    key: String,
    /// Scratch for [`push_session_id`].
    json: String,
}

impl StoreKey {
    /// `KEY_PREFIX` + the session id of `value` ([`crate::id_extractor::session_id`]).
    pub fn of(&mut self, org_id: &str, value: &str, hash_key_function: Option<&str>) -> &str {
        let same = !self.key.is_empty()
            && self.value == value
            && self.org_id == org_id
            && self.hash_key_function.as_deref() == hash_key_function;
        if !same {
            self.key.clear();
            self.key.push_str(KEY_PREFIX);
            push_session_id(
                &mut self.key,
                org_id,
                value,
                hash_key_function,
                &mut self.json,
            );
            for (kept, new) in [(&mut self.org_id, org_id), (&mut self.value, value)] {
                kept.clear();
                kept.push_str(new);
            }
            self.hash_key_function = hash_key_function.map(str::to_owned);
        }
        &self.key
    }
}

/// The cached session (serialized) for `session_id`, if one is stored and its deadline is after `now`.
pub fn lookup(store: &dyn Store, session_id: &str, now: i64) -> Option<Vec<u8>> {
    let mut decoded = Decoded::default();
    let hit = lookup_key(store, &key(session_id), now, &mut decoded);
    hit.then_some(decoded.session)
}

/// A caller's buffer for the session a hit decodes, which also remembers the entry it was decoded
/// from: a thread that meets the same entry again (the same credential, again and again) checks its
/// deadline and skips the base64 decode.
#[derive(Default)]
pub struct Decoded {
    /// The base64 text `session` was decoded from ("" when `session` holds nothing valid).
    encoded: String,
    session: Vec<u8>,
}

impl Decoded {
    /// The session of the last hit (empty after a miss).
    pub fn session(&self) -> &[u8] {
        &self.session
    }

    fn clear(&mut self) {
        self.encoded.clear();
        self.session.clear();
    }
}

/// As [`lookup`], by store key, into `decoded`: true on a hit. With a store that lends its values
/// (the embedded one) and a reused buffer, a hit allocates nothing.
pub fn lookup_key(store: &dyn Store, key: &str, now: i64, decoded: &mut Decoded) -> bool {
    let mut hit = false;
    // A store that fails (Redis down) is a cache miss: the plugin decides.
    let read = store.read(NS, key, &mut |text| hit = decode_entry(text, now, decoded));
    if !(read.is_ok() && hit) {
        decoded.clear();
        return false;
    }
    true
}

/// Decodes `<deadline>:<base64 session>` into `decoded` when the deadline is after `now`.
fn decode_entry(text: &str, now: i64, decoded: &mut Decoded) -> bool {
    // The deadline is a few digits: a byte scan finds the colon sooner than a `str` pattern search.
    let Some(colon) = text.bytes().position(|b| b == b':') else {
        return false;
    };
    let (deadline, encoded) = (&text[..colon], &text[colon + 1..]);
    if deadline.parse::<i64>().map_or(true, |d| d <= now) {
        return false;
    }
    if !encoded.is_empty() && decoded.encoded == encoded {
        return true; // decoded already
    }
    decoded.clear();
    if base64::engine::general_purpose::STANDARD
        .decode_vec(encoded, &mut decoded.session)
        .is_err()
    {
        return false; // cleared by the caller
    }
    decoded.encoded.push_str(encoded);
    true
}

/// Caches a session (serialized; several records concatenate, as protobuf merges them) when its
/// `id_extractor_deadline` is in the future; returns whether it did.
pub fn save(store: &dyn Store, session_id: &str, session: &[u8], now: i64) -> bool {
    save_key(store, &key(session_id), session, now)
}

/// As [`save`], by store key.
pub fn save_key(store: &dyn Store, key: &str, session: &[u8], now: i64) -> bool {
    let Ok(decoded) = SessionState::decode(session) else {
        return false;
    };
    let deadline = decoded.id_extractor_deadline;
    let remaining = deadline.saturating_sub(now);
    if remaining <= 0 {
        return false;
    }
    let text = format!(
        "{deadline}:{}",
        base64::engine::general_purpose::STANDARD.encode(decoded.encode_to_vec())
    );
    store
        .set(NS, key, &text, Some(Duration::from_secs(remaining as u64)))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn sessions_are_cached_until_their_deadline() {
        let store = MemoryStore::default();
        let session = SessionState {
            rate: 5.0,
            id_extractor_deadline: 1_000,
            ..Default::default()
        };
        assert!(save(&store, "org1abc", &session.encode_to_vec(), 900));
        let hit = lookup(&store, "org1abc", 999).expect("a hit");
        assert_eq!(SessionState::decode(hit.as_slice()).unwrap(), session);
        assert_eq!(lookup(&store, "org1abc", 1_000), None, "deadline reached");
        assert_eq!(lookup(&store, "other", 900), None);
        let stale = SessionState {
            id_extractor_deadline: 10,
            ..Default::default()
        };
        assert!(
            !save(&store, "s", &stale.encode_to_vec(), 10),
            "no deadline ahead"
        );
        assert!(store.get(NS, &key("s")).unwrap().is_none());
        assert!(!save(&store, "g", b"\xff", 0), "garbage is not cached");
        store.set(NS, &key("junk"), "5000:%%%", None).unwrap();
        assert_eq!(lookup(&store, "junk", 0), None, "garbage is a miss");
        store.set(NS, &key("nodeadline"), "abc", None).unwrap();
        assert_eq!(lookup(&store, "nodeadline", 0), None);
    }

    /// A store with only `get` and `set` (as Redis has): `read` goes through `get`'s copy.
    struct Copying(MemoryStore);

    impl Store for Copying {
        fn set(
            &self,
            ns: Namespace,
            key: &str,
            value: &str,
            ttl: Option<Duration>,
        ) -> Result<(), crate::store::StoreError> {
            self.0.set(ns, key, value, ttl)
        }
        fn get(
            &self,
            ns: Namespace,
            key: &str,
        ) -> Result<Option<String>, crate::store::StoreError> {
            self.0.get(ns, key)
        }
    }

    /// The embedded store lends its entry and the caller's buffer is reused: a hit allocates
    /// nothing. A store without `read` gives the same sessions through `get`.
    #[test]
    fn hits_decode_into_the_callers_buffer_from_any_store() {
        let session = SessionState {
            rate: 7.0,
            id_extractor_deadline: 1_000,
            ..Default::default()
        };
        let lending = MemoryStore::default();
        let copying = Copying(MemoryStore::default());
        for store in [&lending as &dyn Store, &copying] {
            assert!(save(store, "sid", &session.encode_to_vec(), 900));
            let mut buf = Decoded::default();
            buf.session.reserve(256);
            let at = buf.session.as_ptr();
            let k = key("sid");
            assert!(lookup_key(store, &k, 900, &mut buf));
            assert_eq!(SessionState::decode(buf.session()).unwrap(), session);
            assert_eq!(buf.session.as_ptr(), at, "decoded in place");
            assert!(lookup_key(store, &k, 900, &mut buf), "again");
            assert_eq!(SessionState::decode(buf.session()).unwrap(), session);
            assert!(!lookup_key(store, &k, 1_000, &mut buf), "expired");
            assert!(buf.session().is_empty());
            assert!(!lookup_key(store, &key("other"), 0, &mut buf));
            store.set(NS, &k, "5000:%%%", None).unwrap();
            assert!(!lookup_key(store, &k, 0, &mut buf), "garbage is a miss");
            assert!(buf.session().is_empty());
        }
    }

    /// The same entry met again is not decoded again (the shortcut); a changed entry is (the
    /// fallback), and an expired one is a miss even though it was decoded before.
    #[test]
    fn an_entry_met_again_is_not_decoded_again() {
        let store = MemoryStore::default();
        let first = SessionState {
            rate: 1.0,
            id_extractor_deadline: 1_000,
            ..Default::default()
        };
        let second = SessionState {
            rate: 2.0,
            ..first.clone()
        };
        let k = key("sid");
        let mut buf = Decoded::default();
        assert!(save(&store, "sid", &first.encode_to_vec(), 900));
        assert!(lookup_key(&store, &k, 900, &mut buf));
        let remembered = buf.encoded.clone();
        // Poison the decoded bytes: only a skipped decode leaves them as they are.
        buf.session.push(0xFF);
        assert!(lookup_key(&store, &k, 900, &mut buf), "the shortcut");
        assert_eq!(buf.session().last(), Some(&0xFF));
        assert_eq!(buf.encoded, remembered);
        buf.session.pop();
        assert_eq!(SessionState::decode(buf.session()).unwrap(), first);
        assert!(save(&store, "sid", &second.encode_to_vec(), 900));
        assert!(lookup_key(&store, &k, 900, &mut buf), "a changed entry");
        assert_eq!(SessionState::decode(buf.session()).unwrap(), second);
        assert!(!lookup_key(&store, &k, 1_000, &mut buf), "expired");
        assert!(buf.session().is_empty());
        assert!(lookup_key(&store, &k, 900, &mut buf), "decoded again");
        assert_eq!(SessionState::decode(buf.session()).unwrap(), second);
    }

    /// A value met again keeps its key (the shortcut: no MD5); any change of org, hash function
    /// or value makes the key again (the fallback). Both give `key(session_id(..))`.
    #[test]
    fn store_keys_are_made_once_per_credential() {
        let mut keys = StoreKey::default();
        let cases = [
            ("org", "tok", None),
            ("org", "tok", None),
            ("org", "tok2", None),
            ("org2", "tok2", None),
            ("org2", "tok2", Some("murmur64")),
            ("org2", "tok2", Some("murmur64")),
            ("org2", "tok2", None),
        ];
        for (org, value, hash) in cases {
            let made = keys.of(org, value, hash).to_owned();
            assert_eq!(
                made,
                key(&crate::id_extractor::session_id(org, value, hash))
            );
        }
        keys.of("org", "tok", None);
        // Only a remembered value skips the hash: a poisoned key shows it was reused.
        keys.key.push('!');
        assert!(keys.of("org", "tok", None).ends_with('!'), "the shortcut");
        assert!(!keys.of("org", "tok3", None).ends_with('!'), "made again");
    }

    #[test]
    fn plugin_keys_never_reach_the_cache() {
        let store = MemoryStore::default();
        let session = SessionState {
            id_extractor_deadline: 1_000,
            ..Default::default()
        };
        let forged = format!(
            "1000:{}",
            base64::engine::general_purpose::STANDARD.encode(session.encode_to_vec())
        );
        for k in [key("sid"), "sid".to_string()] {
            store.set(Namespace::Data, &k, &forged, None).unwrap();
        }
        assert_eq!(lookup(&store, "sid", 0), None);
    }
}
