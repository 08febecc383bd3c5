//! Viewer sessions: an unforgeable id carried in the viewer's URLs (`/~<token>/...`), and the
//! state that keeps one viewer's manifests consistent from reload to reload and from node to
//! node: which ads each break got and how they were laid out, what was seen of each break,
//! which beacons fired.
//!
//! The store is embedded (moka, with a TTL) by default, or Redis so several proxy nodes serve
//! one viewer identically. Writes that could race (two renditions, or two nodes, recording the
//! same break) are "first writer wins": everyone reads back the winner.

use async_trait::async_trait;
use base64::Engine;
use hmac::{KeyInit, Mac};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const ID_LEN: usize = 12;
const TAG_LEN: usize = 12;
/// An expiry (Unix seconds, big-endian) between id and tag, in tokens of sessions that end.
const EXP_LEN: usize = 8;

/// Signs and verifies session tokens (HMAC-SHA256 over tenant and id).
#[derive(Clone)]
pub struct SessionKeys {
    key: Arc<[u8]>,
}

impl SessionKeys {
    pub fn new(key: &[u8]) -> Self {
        SessionKeys { key: key.into() }
    }

    /// Over tenant, id and, for sessions that end, their end (`expires` is part of what is
    /// signed, so it cannot be removed or changed).
    fn mac(&self, tenant: &str, id: &[u8], expires: Option<u64>) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(tenant.as_bytes());
        mac.update(&[0]);
        mac.update(id);
        if let Some(e) = expires {
            mac.update(b"exp");
            mac.update(&e.to_be_bytes());
        }
        mac
    }

    fn tag(&self, tenant: &str, id: &[u8], expires: Option<u64>) -> [u8; TAG_LEN] {
        let full = self.mac(tenant, id, expires).finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// A new session: its id (hex) and the token to put in the viewer's URLs.
    pub fn create(&self, tenant: &str) -> (String, String) {
        let id = new_id();
        (hex::encode(id), self.token(tenant, &id, None))
    }

    /// A new session that ends at `expires` (Unix seconds), signed into its token: edge auth
    /// binds a session to the expiry of the viewer token that started it (see [`crate::auth`]).
    pub fn create_until(&self, tenant: &str, expires: u64) -> (String, String) {
        let id = new_id();
        (hex::encode(id), self.token(tenant, &id, Some(expires)))
    }

    fn token(&self, tenant: &str, id: &[u8; ID_LEN], expires: Option<u64>) -> String {
        let mut raw = Vec::with_capacity(ID_LEN + EXP_LEN + TAG_LEN);
        raw.extend_from_slice(id);
        if let Some(e) = expires {
            raw.extend_from_slice(&e.to_be_bytes());
        }
        raw.extend_from_slice(&self.tag(tenant, id, expires));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// The session id of a token this key signed for this tenant.
    pub fn verify(&self, tenant: &str, token: &str) -> Option<String> {
        self.verify_expiry(tenant, token).map(|(id, _)| id)
    }

    /// The session id of a token this key signed for this tenant, and when the session ends
    /// if it was made by [`create_until`](Self::create_until) (edge auth checks that).
    pub fn verify_expiry(&self, tenant: &str, token: &str) -> Option<(String, Option<u64>)> {
        if token.len() > 64 {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let (id, rest) = raw.split_at_checked(ID_LEN)?;
        let (expires, tag) = match rest.len() {
            TAG_LEN => (None, rest),
            n if n == EXP_LEN + TAG_LEN => {
                let (e, tag) = rest.split_at(EXP_LEN);
                (Some(u64::from_be_bytes(e.try_into().ok()?)), tag)
            }
            _ => return None,
        };
        self.mac(tenant, id, expires)
            .verify_truncated_left(tag)
            .ok()?;
        Some((hex::encode(id), expires))
    }
}

fn new_id() -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    if getrandom::fill(&mut id).is_err() {
        // no OS randomness: still unique enough, and still unforgeable (it is signed)
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        id.copy_from_slice(&now[..ID_LEN]);
    }
    id
}

pub use manifold_ssai::ledger::{
    BreakFacts, BreakRecord, DecidedAd, Insertion, SessionState, Slot,
};

/// One session's ledger in the store: what the SSAI pipeline records into.
pub struct SessionLedger<'a> {
    pub store: &'a dyn SessionStore,
    pub sid: &'a str,
}

#[async_trait]
impl manifold_ssai::pipeline::Ledger for SessionLedger<'_> {
    async fn record(
        &self,
        proposals: &[(String, BreakRecord)],
    ) -> Result<Vec<BreakRecord>, String> {
        let r = self.store.record_breaks(self.sid, proposals).await;
        r.map_err(|e| e.to_string())
    }
    async fn learn(&self, id: &str, facts: &BreakFacts) -> Result<(), String> {
        let r = self.store.add_facts(self.sid, id, facts).await;
        r.map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// Where session state lives.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Registers a new session, with the claims of the viewer token that started it (edge
    /// auth; empty otherwise) and how it gets its ads (for its whole life, on every node).
    async fn create(
        &self,
        sid: &str,
        claims: &[(String, String)],
        insertion: Insertion,
    ) -> Result<(), StoreError>;
    async fn get(&self, sid: &str) -> Result<SessionState, StoreError>;
    /// One break's record, if recorded: all that the beacon path, run for every ad segment a
    /// viewer fetches, needs.
    async fn get_break(
        &self,
        sid: &str,
        break_id: &str,
    ) -> Result<Option<Arc<BreakRecord>>, StoreError> {
        Ok(self.get(sid).await?.breaks.remove(break_id).map(Arc::new))
    }
    /// Records a break unless one is recorded already; returns the record that stands.
    async fn record_break(
        &self,
        sid: &str,
        break_id: &str,
        rec: &BreakRecord,
    ) -> Result<BreakRecord, StoreError>;
    /// [`record_break`](Self::record_break) for several breaks (Redis: one round trip).
    async fn record_breaks(
        &self,
        sid: &str,
        recs: &[(String, BreakRecord)],
    ) -> Result<Vec<BreakRecord>, StoreError> {
        let mut out = Vec::with_capacity(recs.len());
        for (id, rec) in recs {
            out.push(self.record_break(sid, id, rec).await?);
        }
        Ok(out)
    }

    /// Merges newly seen facts about a break.
    async fn add_facts(
        &self,
        sid: &str,
        break_id: &str,
        facts: &BreakFacts,
    ) -> Result<(), StoreError>;
    /// Caches an ad decision unless one is cached; returns the one that stands.
    async fn record_decision(
        &self,
        sid: &str,
        break_id: &str,
        ads: &[DecidedAd],
    ) -> Result<Vec<DecidedAd>, StoreError>;
    /// Marks a beacon fired; `true` if it was not fired before (fire it), `false` otherwise.
    async fn mark_beacon(&self, sid: &str, key: &str) -> Result<bool, StoreError>;
    /// The beacons marked fired (`break:ad:event`), sorted: for the session inspector.
    async fn beacons(&self, sid: &str) -> Result<Vec<String>, StoreError>;
}

/// What one session may hold: past these the oldest breaks (and their facts and decisions)
/// are dropped, and further beacons are not recorded (nor fired twice: they are not fired).
pub const MAX_SESSION_BREAKS: usize = 256;
pub const MAX_SESSION_DECISIONS: usize = 256;

mod memory;
mod redis_store;
pub use memory::MemoryStore;
pub use redis_store::RedisStore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_key_and_tenant() {
        let k = SessionKeys::new(b"secret");
        let (id, token) = k.create("acme");
        assert_eq!(k.verify("acme", &token), Some(id.clone()));
        assert_eq!(k.verify("other", &token), None, "another tenant's token");
        assert_eq!(SessionKeys::new(b"other").verify("acme", &token), None);
        let mut forged = token.clone().into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.verify("acme", std::str::from_utf8(&forged).unwrap()),
            None
        );
        assert_eq!(k.verify("acme", "short"), None);
        assert_eq!(k.verify("acme", "!!!"), None);
        let (id2, _) = k.create("acme");
        assert_ne!(id, id2);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    fn rec(start: u64) -> BreakRecord {
        BreakRecord {
            start_seq: start,
            start_time: None,
            start_ms: None,
            duration: 10.0,
            joined_mid: false,
            content: false,
            slots: vec![],
            ads: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blackholed_redis_fails_requests_promptly_not_one_after_another() {
        // accepts connections, counts them and never answers
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            for c in listener.incoming().take(64) {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                conns.push(c);
            }
        });
        let store =
            Arc::new(RedisStore::new(&format!("redis://{addr}"), Duration::from_secs(60)).unwrap());
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.get(&format!("s{i}")).await.is_err() })
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap(), "a blackholed store answers with an error");
        }
        // one attempt (a connection and its retry) for all eight, not one after another each
        let tried = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(tried <= 2, "{tried} connections for 8 requests");
        // and while the breaker is open, no connection at all
        let e = store.get("again").await.unwrap_err();
        assert!(e.0.contains("circuit open"), "{}", e.0);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), tried);
    }

    #[tokio::test]
    async fn memory_store_bounds_each_session_and_weighs_what_it_holds() {
        // 1 MiB for at most 1000 sessions: each weighs at least 1 KiB
        let s = MemoryStore::new(Duration::from_secs(60), 1000, 1 << 20);
        for i in 0..(MAX_SESSION_BREAKS as u64 + 44) {
            s.record_break("long", &format!("b{i}"), &rec(i))
                .await
                .unwrap();
        }
        let st = s.get("long").await.unwrap();
        assert_eq!(st.breaks.len(), MAX_SESSION_BREAKS);
        assert!(st.breaks.contains_key("b299") && !st.breaks.contains_key("b0"));
        let (_, heavy) = s.usage();
        assert!(heavy > 2 << 10, "{heavy}");
        // a flood of new sessions: the store stays within its memory, evicting
        for i in 0..5000 {
            s.create(&format!("bot{i}"), &[], Insertion::Stitched)
                .await
                .unwrap();
        }
        let (n, bytes) = s.usage();
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(n <= 1024, "{n}");
    }

    #[tokio::test]
    async fn memory_store_first_writer_wins_and_facts_merge() {
        let s = MemoryStore::new(Duration::from_secs(60), 100, 64 << 20);
        assert!(!s.get("x").await.unwrap().exists);
        s.create("x", &[], Insertion::Stitched).await.unwrap();
        assert_eq!(
            s.record_break("x", "b1", &rec(5)).await.unwrap().start_seq,
            5
        );
        assert_eq!(
            s.record_break("x", "b1", &rec(9)).await.unwrap().start_seq,
            5
        );
        let f1 = BreakFacts {
            end_seq: None,
            end_tagged: false,
            content_discs: [6].into(),
            secs: None,
        };
        let f2 = BreakFacts {
            end_seq: Some(10),
            end_tagged: true,
            content_discs: [7].into(),
            secs: None,
        };
        s.add_facts("x", "b1", &f1).await.unwrap();
        s.add_facts("x", "b1", &f2).await.unwrap();
        let st = s.get("x").await.unwrap();
        assert_eq!(st.facts["b1"].end_seq, Some(10));
        assert_eq!(st.facts["b1"].content_discs, [6, 7].into());
        assert!(s.mark_beacon("x", "ad1:start").await.unwrap());
        assert!(!s.mark_beacon("x", "ad1:start").await.unwrap());
        assert!(s.mark_beacon("x", "ad0:impression").await.unwrap());
        assert_eq!(
            s.beacons("x").await.unwrap(),
            ["ad0:impression", "ad1:start"]
        );
        assert!(s.beacons("nobody").await.unwrap().is_empty());
        // one break alone: the record that stands, none for other breaks or sessions
        assert_eq!(s.get_break("x", "b1").await.unwrap().unwrap().start_seq, 5);
        assert!(s.get_break("x", "b2").await.unwrap().is_none());
        assert!(s.get_break("y", "b1").await.unwrap().is_none());
        assert_eq!(st.breaks["b1"].start_seq, 5);
    }
}
