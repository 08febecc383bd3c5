//! The segment cache's storage: a pingora-cache [`Storage`] on a moka cache weighed in bytes
//! (TinyLFU admission, LRU eviction), so memory stays within `cache.size` whatever the mix of
//! object sizes. Bodies are kept as one `Bytes`: hits and ranges are zero-copy slices.
//!
//! An object still arriving from the origin can be read while it arrives (pingora-cache's
//! streaming partial writes): requests that waited on the cache lock for it are released once
//! its headers are in and stream its bytes as they come. An LL-HLS part a player's preload
//! hint asked for is made by the packager while it is requested; every viewer waiting for it
//! gets each byte when the origin sends it, from one origin request.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// One stored response: serialized cache meta and the whole body.
struct Object {
    meta_internal: Bytes,
    meta_header: Bytes,
    /// The meta in parsed form when `CacheMeta::new` can rebuild it exactly, so a hit skips
    /// deserializing (pingora compresses stored headers with zstd: 8% of a hit's CPU).
    parsed: Option<ParsedMeta>,
    body: Bytes,
}

#[derive(Clone)]
struct ParsedMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    header: ResponseHeader,
}

impl ParsedMeta {
    /// Only metas that `CacheMeta::new` reproduces: never revalidated, no override, no variance.
    fn of(meta: &CacheMeta) -> Option<ParsedMeta> {
        let plain = meta.updated() == meta.created()
            && meta.epoch_override().is_none()
            && meta.variance().is_none();
        plain.then(|| ParsedMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            header: meta.response_header_copy(),
        })
    }
}

impl Object {
    fn new(meta: &CacheMeta, body: Bytes) -> Result<Object> {
        let (internal, header) = meta.serialize()?;
        Ok(Object {
            meta_internal: Bytes::from(internal),
            meta_header: Bytes::from(header),
            parsed: ParsedMeta::of(meta),
            body,
        })
    }

    fn weight(&self) -> u32 {
        // the parsed header costs about what its serialized form does, uncompressed
        let meta = self.meta_internal.len() + 2 * self.meta_header.len() + 256;
        (meta + self.body.len()).min(u32::MAX as usize) as u32
    }

    fn meta(&self) -> Result<CacheMeta> {
        match &self.parsed {
            Some(p) => Ok(CacheMeta::new(
                p.fresh_until,
                p.created,
                p.stale_while_revalidate_sec,
                p.stale_if_error_sec,
                p.header.clone(),
            )),
            None => CacheMeta::deserialize(&self.meta_internal, &self.meta_header),
        }
    }
}

/// Byte-bounded memory storage for pingora-cache.
pub struct SegmentStorage {
    objects: moka::sync::Cache<HashBinary, Arc<Object>>,
    max_object: usize,
    /// Objects being written, by key (more than one if a lock wait timed out).
    writing: parking_lot::Mutex<HashMap<HashBinary, Vec<Arc<Writing>>>>,
    next_write: AtomicU64,
}

/// An object on its way in: what has arrived so far, and a signal for each change.
struct Writing {
    id: u64,
    /// The object's meta (its body stays empty here).
    meta: Object,
    chunks: parking_lot::Mutex<Vec<Bytes>>,
    state: watch::Sender<Arrived>,
}

/// What a lookup found under a key.
enum Found {
    Whole(Arc<Object>),
    Writing(Arc<Writing>),
    None,
}

/// How much of an object being written has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrived {
    Chunks(usize),
    Complete(usize),
    /// The write failed or was dropped: readers fail too (never a truncated body as whole).
    Aborted,
}

impl SegmentStorage {
    /// `capacity` bytes in all; single objects above `max_object` bytes are not kept.
    pub fn new(capacity: u64, max_object: usize) -> Self {
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k, v: &Arc<Object>| v.weight())
            .build();
        SegmentStorage {
            objects,
            max_object,
            writing: Default::default(),
            next_write: AtomicU64::new(0),
        }
    }

    /// The object under `k`: whole, still arriving, or neither. `between_looks` lets a test
    /// finish a write at the worst moment.
    fn find(&self, k: &HashBinary, between_looks: impl FnOnce()) -> Found {
        if let Some(obj) = self.objects.get(k) {
            return Found::Whole(obj);
        }
        between_looks();
        if let Some(w) = self.writing.lock().get(k).and_then(|l| l.first().cloned()) {
            return Found::Writing(w);
        }
        // A write can finish between the two looks. `finish` stores the object before the
        // writer leaves `writing`, so a second look finds it; without it, a reader woken by the
        // released cache lock would see neither and fetch the origin a second time.
        match self.objects.get(k) {
            Some(obj) => Found::Whole(obj),
            None => Found::None,
        }
    }

    fn partial_hit(w: &Arc<Writing>) -> Result<(CacheMeta, HitHandler)> {
        Ok((
            w.meta.meta()?,
            Box::new(Partial {
                writing: w.clone(),
                arrived: w.state.subscribe(),
                read: 0,
            }),
        ))
    }

    fn done_writing(&self, key: &HashBinary, id: u64) {
        let mut all = self.writing.lock();
        if let Some(list) = all.get_mut(key) {
            list.retain(|w| w.id != id);
            if list.is_empty() {
                all.remove(key);
            }
        }
    }

    /// Bytes currently held (after pending evictions are applied).
    pub fn weighted_size(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.weighted_size()
    }

    pub fn entry_count(&self) -> u64 {
        self.objects.run_pending_tasks();
        self.objects.entry_count()
    }
}

#[async_trait]
impl Storage for SegmentStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key.combined_bin();
        let obj = match self.find(&k, || ()) {
            Found::None => return Ok(None),
            Found::Writing(w) => return Self::partial_hit(&w).map(Some),
            Found::Whole(obj) => obj,
        };
        let meta = match obj.meta() {
            Ok(m) => m,
            Err(e) => {
                // a corrupt entry is a miss, never a failed request
                tracing::warn!(error = %e, "dropping unreadable cache entry");
                self.objects.invalidate(&k);
                return Ok(None);
            }
        };
        let end = obj.body.len();
        Ok(Some((
            meta,
            Box::new(Hit {
                body: obj.body.clone(),
                start: 0,
                end,
                done: false,
            }),
        )))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(id) = tag
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes)
        else {
            return self.lookup(key, trace).await;
        };
        let w = self
            .writing
            .lock()
            .get(&key.combined_bin())
            .and_then(|l| l.iter().find(|w| w.id == id).cloned());
        w.map(|w| Self::partial_hit(&w)).transpose()
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let id = self.next_write.fetch_add(1, Ordering::Relaxed);
        let writing = Arc::new(Writing {
            id,
            meta: Object::new(meta, Bytes::new())?,
            chunks: Default::default(),
            state: watch::channel(Arrived::Chunks(0)).0,
        });
        let k = key.combined_bin();
        self.writing
            .lock()
            .entry(k)
            .or_default()
            .push(writing.clone());
        Ok(Box::new(Miss {
            key: k,
            body: BytesMut::new(),
            storage: self,
            writing,
            tag: id.to_be_bytes(),
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = target.key().combined_bin();
        Ok(match self.objects.remove(&key) {
            Some(_) => PurgeOutcome::Purged(None),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let k = key.combined_bin();
        let Some(old) = self.objects.get(&k) else {
            return Ok(false);
        };
        self.objects
            .insert(k, Arc::new(Object::new(meta, old.body.clone())?));
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reads a stored body, whole or one range.
struct Hit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len();
        if start >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} beyond body length {len}"),
            );
        }
        self.start = start;
        self.end = end.map_or(len, |e| e.min(len));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Reads an object while it is written: each chunk once it has arrived.
struct Partial {
    writing: Arc<Writing>,
    arrived: watch::Receiver<Arrived>,
    read: usize,
}

#[async_trait]
impl HandleHit for Partial {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let (have, complete) = match *self.arrived.borrow_and_update() {
                Arrived::Chunks(n) => (n, false),
                Arrived::Complete(n) => (n, true),
                Arrived::Aborted => {
                    return Error::e_explain(ErrorType::InternalError, "cache write aborted")
                }
            };
            if self.read < have {
                let chunks = self.writing.chunks.lock();
                let joined: BytesMut =
                    chunks[self.read..have]
                        .iter()
                        .fold(BytesMut::new(), |mut b, c| {
                            b.extend_from_slice(c);
                            b
                        });
                self.read = have;
                return Ok(Some(joined.freeze()));
            }
            if complete {
                return Ok(None);
            }
            if self.arrived.changed().await.is_err() {
                return Error::e_explain(ErrorType::InternalError, "cache write went away");
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        false
    }

    fn seek(&mut self, _start: usize, _end: Option<usize>) -> Result<()> {
        Error::e_explain(
            ErrorType::InternalError,
            "no ranges of an object still arriving",
        )
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn get_eviction_weight(&self) -> usize {
        0
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collects a body from the origin; whole objects become hits once complete, readers of the
/// one being written see its chunks as they arrive.
struct Miss {
    key: HashBinary,
    body: BytesMut,
    storage: &'static SegmentStorage,
    writing: Arc<Writing>,
    tag: [u8; 8],
    finished: bool,
}

impl Drop for Miss {
    fn drop(&mut self) {
        if !self.finished {
            self.writing.state.send_replace(Arrived::Aborted);
        }
        self.storage.done_writing(&self.key, self.writing.id);
    }
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > self.storage.max_object {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("object exceeds max_object_size {}", self.storage.max_object),
            );
        }
        self.body.extend_from_slice(&data);
        let n = {
            let mut chunks = self.writing.chunks.lock();
            chunks.push(data);
            chunks.len()
        };
        self.writing.state.send_replace(Arrived::Chunks(n));
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let body = std::mem::take(&mut self.body).freeze();
        let obj = Arc::new(Object {
            body,
            meta_internal: self.writing.meta.meta_internal.clone(),
            meta_header: self.writing.meta.meta_header.clone(),
            parsed: self.writing.meta.parsed.clone(),
        });
        let size = obj.weight() as usize;
        self.storage.objects.insert(self.key, obj);
        self.finished = true;
        let n = self.writing.chunks.lock().len();
        self.writing.state.send_replace(Arrived::Complete(n));
        Ok(MissFinishType::Created(size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn storage(capacity: u64) -> &'static SegmentStorage {
        Box::leak(Box::new(SegmentStorage::new(capacity, 1 << 20)))
    }

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).unwrap();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    async fn put(s: &'static SegmentStorage, key: &CacheKey, body: &[u8]) {
        let span = pingora_cache::trace::Span::inactive().handle();
        let mut miss = s.get_miss_handler(key, &meta(), &span).await.unwrap();
        let (a, b) = body.split_at(body.len() / 2);
        miss.write_body(Bytes::copy_from_slice(a), false)
            .await
            .unwrap();
        miss.write_body(Bytes::copy_from_slice(b), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    }

    async fn read_all(hit: &mut HitHandler) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[tokio::test]
    async fn stores_and_serves_whole_and_ranges() {
        let s = storage(1 << 20);
        let key = CacheKey::new("tenant/seg1.ts", "t");
        let span = pingora_cache::trace::Span::inactive().handle();
        assert!(s.lookup(&key, &span).await.unwrap().is_none());
        put(s, &key, b"0123456789").await;
        let (m, mut hit) = s.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(m.response_header().status, 200);
        assert_eq!(
            m.fresh_until()
                .duration_since(m.created())
                .unwrap()
                .as_secs(),
            60
        );
        assert_eq!(m.created(), m.updated());
        assert_eq!(read_all(&mut hit).await, b"0123456789");
        hit.seek(2, Some(5)).unwrap();
        assert_eq!(read_all(&mut hit).await, b"234");
        assert!(hit.seek(10, None).is_err());
    }

    #[tokio::test]
    async fn unfinished_writes_are_streamed_and_never_kept() {
        let s = storage(1 << 20);
        let key = CacheKey::new("tenant/seg2.ts", "t");
        let span = pingora_cache::trace::Span::inactive().handle();
        let mut miss = s.get_miss_handler(&key, &meta(), &span).await.unwrap();
        miss.write_body(Bytes::from_static(b"part"), false)
            .await
            .unwrap();
        // a reader that comes while it arrives gets what is in, then each chunk as it comes
        let (_, mut reader) = s.lookup(&key, &span).await.unwrap().expect("partial hit");
        let tag = miss.streaming_write_tag().unwrap().to_vec();
        let (_, mut writer_view) = s
            .lookup_streaming_write(&key, Some(&tag), &span)
            .await
            .unwrap()
            .expect("the writer's own reader");
        assert_eq!(reader.read_body().await.unwrap().unwrap(), "part");
        let next = tokio::spawn(async move { reader.read_body().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "waits for the next chunk");
        miss.write_body(Bytes::from_static(b"ial"), false)
            .await
            .unwrap();
        assert_eq!(next.await.unwrap().unwrap().unwrap(), "ial");
        assert_eq!(writer_view.read_body().await.unwrap().unwrap(), "partial");
        // dropped before it finished: readers fail, nothing is kept
        drop(miss);
        assert!(writer_view.read_body().await.is_err());
        assert!(s.lookup(&key, &span).await.unwrap().is_none());
        // one that finishes is whole for readers that were streaming it, then a plain hit
        let mut miss = s.get_miss_handler(&key, &meta(), &span).await.unwrap();
        let (_, mut reader) = s.lookup(&key, &span).await.unwrap().expect("partial hit");
        miss.write_body(Bytes::from_static(b"whole"), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
        assert_eq!(reader.read_body().await.unwrap().unwrap(), "whole");
        assert!(reader.read_body().await.unwrap().is_none());
        assert_eq!(
            read_all(&mut s.lookup(&key, &span).await.unwrap().unwrap().1).await,
            b"whole"
        );
        assert!(s.writing.lock().is_empty());
    }

    #[tokio::test]
    async fn oversize_objects_are_refused() {
        let s: &'static SegmentStorage = Box::leak(Box::new(SegmentStorage::new(1 << 20, 4)));
        let key = CacheKey::new("big", "t");
        let span = pingora_cache::trace::Span::inactive().handle();
        let mut miss = s.get_miss_handler(&key, &meta(), &span).await.unwrap();
        assert!(miss
            .write_body(Bytes::from_static(b"12345"), true)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn memory_stays_within_capacity() {
        let s = storage(64 * 1024);
        let body = vec![7u8; 4096];
        for i in 0..200 {
            put(s, &CacheKey::new(format!("seg{i}"), "t"), &body).await;
        }
        assert!(s.weighted_size() <= 64 * 1024, "{}", s.weighted_size());
        assert!(s.entry_count() >= 1);
    }

    #[tokio::test]
    async fn purge_and_update_meta() {
        let s = storage(1 << 20);
        let key = CacheKey::new("p", "t");
        let span = pingora_cache::trace::Span::inactive().handle();
        put(s, &key, b"abc").await;
        let mut m = meta();
        m.response_header_mut().insert_header("x-new", "1").unwrap();
        // a revalidated meta (updated != created) is kept serialized and read back exactly
        m.update_freshness(SystemTime::now() + Duration::from_secs(90), 0, 5);
        assert!(s.update_meta(&key, &m, &span).await.unwrap());
        let (got, mut hit) = s.lookup(&key, &span).await.unwrap().unwrap();
        assert_eq!(got.headers().get("x-new").unwrap(), "1");
        assert_eq!(got.updated(), m.updated());
        assert_eq!(got.stale_if_error_sec(), 5);
        assert_eq!(read_all(&mut hit).await, b"abc");
        let compact = key.to_compact();
        let out = s
            .purge(
                PurgeTarget::Active(&compact),
                PurgeType::Invalidation,
                &span,
            )
            .await
            .unwrap();
        assert_eq!(out, PurgeOutcome::Purged(None));
        assert!(s.lookup(&key, &span).await.unwrap().is_none());
    }

    /// A write finishing between the looks of a lookup is still found (whole), not missed:
    /// a miss there sends a reader the cache lock released to the origin a second time.
    #[test]
    fn a_write_finishing_during_a_lookup_is_never_missed() {
        let s = storage(1 << 20);
        let key = CacheKey::new("race/1.ts", "t");
        let span = pingora_cache::trace::Span::inactive().handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut miss = rt
            .block_on(s.get_miss_handler(&key, &meta(), &span))
            .unwrap();
        rt.block_on(miss.write_body(Bytes::from_static(b"seg"), true))
            .unwrap();
        let found = s.find(&key.combined_bin(), || {
            rt.block_on(miss.finish()).unwrap();
        });
        match found {
            Found::Whole(obj) => assert_eq!(&obj.body[..], b"seg"),
            Found::Writing(_) => panic!("the write had finished"),
            Found::None => panic!("a finished write was missed"),
        }
    }
}
