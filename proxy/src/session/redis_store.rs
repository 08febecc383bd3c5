//! The Redis session store: several proxy nodes serve one viewer identically; first writer
//! wins through Redis' own atomic operations, and a circuit breaker keeps a down Redis from
//! holding requests up.

use super::*;

/// Redis: one hash per session (`mf:s:<sid>`), fields `b:<break>` (record, HSETNX),
/// `d:<break>` (decision, HSETNX), `e:<break>` (end, HSETNX), `claims` (edge auth, set at
/// creation); a set per break for content
/// discontinuities; a set for fired beacons. Every key carries the session TTL.
pub struct RedisStore {
    client: redis::Client,
    /// Made on first use, on the runtime serving requests (its driver task lives there).
    manager: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    ttl_secs: i64,
    /// Circuit breaker: after Redis failed, requests fail at once (their fail policy) until
    /// this instant, then one tries again. Without it, requests queued on a connection
    /// attempt each waited out their own timeout in turn (N requests, N × 0.5 s).
    open_until: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// How long the breaker stays open after a Redis failure.
const BREAKER_OPEN: Duration = Duration::from_secs(2);

impl RedisStore {
    /// A store for `url`, checked but not connected: the connection is made on first use
    /// (on the runtime serving requests, where its driver task then lives), and again on a
    /// later use if Redis did not answer.
    pub fn new(url: &str, ttl: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(format!("{url}: {e}")))?;
        Ok(RedisStore {
            client,
            manager: tokio::sync::OnceCell::new(),
            ttl_secs: ttl.as_secs().max(1) as i64,
            open_until: parking_lot::Mutex::new(None),
        })
    }

    /// Whether the server answers a PING, on a throwaway connection.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut probe = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_err)?;
        redis::cmd("PING")
            .query_async::<String>(&mut probe)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    /// A Redis error: opens the breaker.
    fn trip(&self, e: redis::RedisError) -> StoreError {
        *self.open_until.lock() = Some(std::time::Instant::now() + BREAKER_OPEN);
        redis_err(e)
    }

    fn check_breaker(&self) -> Result<(), StoreError> {
        let mut open = self.open_until.lock();
        match *open {
            Some(t) if std::time::Instant::now() < t => Err(StoreError(
                "redis failed moments ago: not retried yet (circuit open)".into(),
            )),
            Some(_) => {
                // half open: this request tries; the others keep failing fast until it is done
                *open = Some(std::time::Instant::now() + BREAKER_OPEN);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Sets a session's `field` to `value` unless it is set: what stands (first writer wins).
    async fn first_writer<T>(&self, sid: &str, field: &str, value: &T) -> Result<T, StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone,
    {
        let mut c = self.conn().await?;
        let key = Self::key(sid);
        let (_, stored, _): ((), Option<String>, ()) = redis::pipe()
            .hset_nx(&key, field, json(value))
            .hget(&key, field)
            .expire(&key, self.ttl_secs)
            .query_async(&mut c)
            .await
            .through(self)?;
        Ok(stored
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| value.clone()))
    }

    /// A command's outcome through the breaker: a failure opens it, a success closes it.
    fn outcome<T>(&self, r: redis::RedisResult<T>) -> Result<T, StoreError> {
        r.map_err(|e| self.trip(e))
            .inspect(|_| self.close_breaker())
    }

    fn close_breaker(&self) {
        let mut open = self.open_until.lock();
        if open.is_some() {
            *open = None;
        }
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        if self.manager.initialized() {
            // connected once: its commands fail fast while the breaker is open
            self.check_breaker()?;
        }
        // a viewer's request waits on this: one quick retry, not the default six with
        // backoff (seconds per request while Redis is down); reconnects do the same
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        self.manager
            .get_or_try_init(|| async {
                // requests queued behind a failed attempt find the breaker open here
                self.check_breaker()?;
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| self.trip(e))
            })
            .await
            .cloned()
    }

    fn key(sid: &str) -> String {
        format!("mf:s:{sid}")
    }
}

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        sid: &str,
        claims: &[(String, String)],
        insertion: Insertion,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = Self::key(sid);
        let mut pipe = redis::pipe();
        pipe.hset_nx(&key, "created", 1);
        if !claims.is_empty() {
            pipe.hset_nx(&key, "claims", json(&claims));
        }
        if insertion != Insertion::Stitched {
            pipe.hset_nx(&key, "mode", insertion.as_str());
        }
        pipe.expire(&key, self.ttl_secs)
            .query_async::<()>(&mut c)
            .await
            .through(self)
    }

    async fn get_break(
        &self,
        sid: &str,
        break_id: &str,
    ) -> Result<Option<Arc<BreakRecord>>, StoreError> {
        // one field, not the whole session (the manifest path refreshes the expiry)
        let mut c = self.conn().await?;
        let v: Option<String> = redis::cmd("HGET")
            .arg(Self::key(sid))
            .arg(format!("b:{break_id}"))
            .query_async(&mut c)
            .await
            .through(self)?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()).map(Arc::new))
    }

    async fn get(&self, sid: &str) -> Result<SessionState, StoreError> {
        let mut c = self.conn().await?;
        let key = Self::key(sid);
        let (fields, _): (BTreeMap<String, String>, ()) = redis::pipe()
            .hgetall(&key)
            .expire(&key, self.ttl_secs)
            .query_async(&mut c)
            .await
            .through(self)?;
        let mut st = SessionState {
            exists: !fields.is_empty(),
            ..Default::default()
        };
        for (f, v) in &fields {
            if let Some(id) = f.strip_prefix("b:") {
                if let Ok(r) = serde_json::from_str(v) {
                    st.breaks.insert(id.to_string(), r);
                }
            } else if let Some(id) = f.strip_prefix("d:") {
                if let Ok(d) = serde_json::from_str(v) {
                    st.decisions.insert(id.to_string(), d);
                }
            } else if f == "claims" {
                st.claims = serde_json::from_str(v).unwrap_or_default();
            } else if f == "mode" {
                st.insertion = Insertion::parse(v).unwrap_or_default();
            } else if let Some(id) = f.strip_prefix("e:") {
                // (end, tagged), or with the content's duration (guided sessions)
                let end = serde_json::from_str::<(u64, bool, f64)>(v)
                    .map(|(e, t, s)| (e, t, Some(s)))
                    .or_else(|_| serde_json::from_str::<(u64, bool)>(v).map(|(e, t)| (e, t, None)));
                if let Ok((end, tagged, secs)) = end {
                    let facts = st.facts.entry(id.to_string()).or_default();
                    facts.end_seq = Some(end);
                    facts.end_tagged = tagged;
                    facts.secs = secs;
                }
            }
        }
        for id in st.breaks.keys().cloned().collect::<Vec<_>>() {
            let discs: BTreeSet<u64> = redis::cmd("SMEMBERS")
                .arg(format!("{key}:disc:{id}"))
                .query_async(&mut c)
                .await
                .through(self)?;
            if !discs.is_empty() {
                st.facts.entry(id).or_default().content_discs = discs;
            }
        }
        Ok(st)
    }

    async fn record_break(
        &self,
        sid: &str,
        id: &str,
        rec: &BreakRecord,
    ) -> Result<BreakRecord, StoreError> {
        self.first_writer(sid, &format!("b:{id}"), rec).await
    }

    async fn record_breaks(
        &self,
        sid: &str,
        recs: &[(String, BreakRecord)],
    ) -> Result<Vec<BreakRecord>, StoreError> {
        if recs.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let key = Self::key(sid);
        let mut pipe = redis::pipe();
        for (id, rec) in recs {
            pipe.hset_nx(&key, format!("b:{id}"), json(rec)).ignore();
        }
        for (id, _) in recs {
            pipe.hget(&key, format!("b:{id}"));
        }
        pipe.expire(&key, self.ttl_secs).ignore();
        let stored: Vec<Option<String>> = pipe.query_async(&mut c).await.through(self)?;
        Ok(recs
            .iter()
            .zip(stored.into_iter().chain(std::iter::repeat(None)))
            .map(|((_, rec), s)| {
                s.and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_else(|| rec.clone())
            })
            .collect())
    }

    async fn add_facts(&self, sid: &str, id: &str, facts: &BreakFacts) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = Self::key(sid);
        let mut pipe = redis::pipe();
        match (facts.end_seq, facts.secs) {
            (Some(end), None) => {
                pipe.hset_nx(&key, format!("e:{id}"), json(&(end, facts.end_tagged)));
            }
            (Some(end), Some(secs)) => {
                pipe.hset_nx(
                    &key,
                    format!("e:{id}"),
                    json(&(end, facts.end_tagged, secs)),
                );
            }
            (None, _) => {}
        }
        if !facts.content_discs.is_empty() {
            let set = format!("{key}:disc:{id}");
            pipe.sadd(
                &set,
                facts.content_discs.iter().copied().collect::<Vec<u64>>(),
            )
            .expire(&set, self.ttl_secs);
        }
        pipe.query_async::<()>(&mut c).await.through(self)
    }

    async fn record_decision(
        &self,
        sid: &str,
        id: &str,
        ads: &[DecidedAd],
    ) -> Result<Vec<DecidedAd>, StoreError> {
        self.first_writer(sid, &format!("d:{id}"), &ads.to_vec())
            .await
    }

    async fn mark_beacon(&self, sid: &str, key: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let set = format!("{}:beacons", Self::key(sid));
        let (added, _): (i64, ()) = redis::pipe()
            .sadd(&set, key)
            .expire(&set, self.ttl_secs)
            .query_async(&mut c)
            .await
            .through(self)?;
        Ok(added == 1)
    }

    async fn beacons(&self, sid: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let set = format!("{}:beacons", Self::key(sid));
        let mut fired: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut c)
            .await
            .through(self)?;
        fired.sort();
        Ok(fired)
    }
}

/// `result.through(store)`: [`RedisStore::outcome`] at the end of a command's chain.
trait Through<T> {
    fn through(self, store: &RedisStore) -> Result<T, StoreError>;
}

impl<T> Through<T> for redis::RedisResult<T> {
    fn through(self, store: &RedisStore) -> Result<T, StoreError> {
        store.outcome(self)
    }
}
