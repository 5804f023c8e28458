//! The auth cache: sessions a CustomKeyCheck plugin returned, kept in the bridge's store (so a shared
//! store serves several gateway instances) under their ID-extractor session id. An entry is used only
//! while the session's `id_extractor_deadline` (unix seconds, set by the plugin) is in the future; the
//! store expires it at that moment too.

use std::time::Duration;

use base64::Engine as _;
use coprocess_proto::{Message, SessionState};

use crate::store::Store;

/// The store key of a session id.
pub fn key(session_id: &str) -> String {
    format!("id-extractor-session:{session_id}")
}

/// The cached session for `session_id`, if one is stored and its deadline is after `now`.
pub fn lookup(store: &dyn Store, session_id: &str, now: i64) -> Option<SessionState> {
    let text = store.get(&key(session_id))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let session = SessionState::decode(bytes.as_slice()).ok()?;
    (session.id_extractor_deadline > now).then_some(session)
}

/// Caches `session` when its deadline is in the future; returns whether it did.
pub fn save(store: &dyn Store, session_id: &str, session: &SessionState, now: i64) -> bool {
    let remaining = session.id_extractor_deadline.saturating_sub(now);
    if remaining <= 0 {
        return false;
    }
    let text = base64::engine::general_purpose::STANDARD.encode(session.encode_to_vec());
    store.set(
        &key(session_id),
        &text,
        Some(Duration::from_secs(remaining as u64)),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn sessions_are_cached_until_their_deadline() {
        let store = MemoryStore::new();
        let session = SessionState {
            rate: 5.0,
            id_extractor_deadline: 1_000,
            ..Default::default()
        };
        assert!(save(&store, "org1abc", &session, 900));
        assert_eq!(lookup(&store, "org1abc", 999), Some(session.clone()));
        assert_eq!(lookup(&store, "org1abc", 1_000), None, "deadline reached");
        assert_eq!(lookup(&store, "other", 900), None);
        let stale = SessionState {
            id_extractor_deadline: 10,
            ..Default::default()
        };
        assert!(
            !save(&store, "s", &stale, 10),
            "no deadline ahead: not cached"
        );
        assert!(store.get(&key("s")).is_none());
        store.set(&key("junk"), "%%%", None);
        assert_eq!(lookup(&store, "junk", 0), None, "garbage is a miss");
    }
}
