//! [`PeerCertificates`]: the client's certificate chain as a request extension, with the
//! per-connection memo of verification results.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;

use crate::identity::LeafInfo;
use crate::verify::ChainResult;

/// How many verification results a connection remembers (one per CA pool generation and
/// usage; a connection that outlives many CA reloads forgets the oldest).
const MEMO_CAPACITY: usize = 8;

/// How long a refusal for the chain's dates (expired, not yet valid) is reused before the
/// chain is verified again: time may lift a "not yet valid", but a connection presenting an
/// expired chain must not cost a chain verification on every request (HTTP/2 streams are
/// cheap to send).
const DATE_REFUSAL_REUSE: Duration = Duration::from_secs(1);

/// The certificate chain a TLS client presented (leaf first), shared by every request of the
/// connection.
///
/// The [`serve`](crate::serve) helper inserts one into each request's extensions when the
/// client sent a certificate; servers with their own accept loop build one per connection with
/// [`PeerCertificates::new`] (from `rustls::CommonState::peer_certificates`) and insert a clone
/// into every request. Cloning is one reference-count increment.
///
/// The value also carries the connection's memo of chain verifications: an authenticator
/// verifies the chain once per CA pool generation and connection, not once per request. Only
/// the presented certificates are stored; the handshake proved the client holds the leaf's
/// private key (see [`RequestClientCert`](crate::RequestClientCert)).
#[derive(Clone)]
pub struct PeerCertificates {
    inner: Arc<Inner>,
}

struct Inner {
    chain: Vec<CertificateDer<'static>>,
    leaf: OnceLock<Arc<LeafInfo>>,
    memo: ArcSwap<Vec<MemoEntry>>,
    /// Held while a missing result is computed, so that concurrent requests of one connection
    /// (HTTP/2 streams) verify a chain once, not once each.
    verifying: Mutex<()>,
}

#[derive(Clone)]
pub(crate) struct MemoEntry {
    pub(crate) key: MemoKey,
    pub(crate) result: Arc<ChainResult>,
    /// When the chain was verified.
    pub(crate) at: Instant,
}

/// What a verification result depends on: the CA pool generation and the required usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemoKey {
    pub(crate) generation: u64,
    pub(crate) usage: u8,
}

impl PeerCertificates {
    /// The chain as presented (leaf first). An empty chain means "no client certificate".
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                chain,
                leaf: OnceLock::new(),
                memo: ArcSwap::from_pointee(Vec::new()),
                verifying: Mutex::new(()),
            }),
        }
    }

    /// Copies the chain out of a borrowed slice (what rustls' `peer_certificates()` returns).
    pub fn from_slice(chain: &[CertificateDer<'_>]) -> Self {
        Self::new(chain.iter().map(|c| c.clone().into_owned()).collect())
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }

    /// The leaf (end-entity) certificate, if any.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.inner.chain.first()
    }

    /// The certificates after the leaf (intermediates the client sent).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        self.inner.chain.get(1..).unwrap_or_default()
    }

    /// Whether the client sent no certificate.
    pub fn is_empty(&self) -> bool {
        self.inner.chain.is_empty()
    }

    /// The parsed identity fields of the leaf, parsed once per connection.
    pub(crate) fn leaf_info(&self) -> Option<&Arc<LeafInfo>> {
        let leaf = self.leaf()?;
        Some(
            self.inner
                .leaf
                .get_or_init(|| Arc::new(LeafInfo::parse(leaf))),
        )
    }

    /// The memoized result for `key`, or `verify()` stored and returned.
    ///
    /// Concurrent misses on one connection run `verify` once; the others wait for it (one
    /// chain verification, well under a millisecond). A refusal for the chain's dates, which
    /// time may lift, is reused for [`DATE_REFUSAL_REUSE`] only, then verified again (also
    /// once for all concurrent requests).
    pub(crate) fn memoized(
        &self,
        key: MemoKey,
        verify: impl FnOnce() -> ChainResult,
    ) -> Arc<ChainResult> {
        self.memoized_with(key, Instant::now, verify)
    }

    /// [`Self::memoized`] on the clock `now` (read only when a result's age matters).
    fn memoized_with(
        &self,
        key: MemoKey,
        now: impl Fn() -> Instant,
        verify: impl FnOnce() -> ChainResult,
    ) -> Arc<ChainResult> {
        let usable = || {
            self.inner
                .memo
                .load()
                .iter()
                .find(|e| e.key == key)
                .filter(|e| {
                    e.result.is_cacheable()
                        || now().saturating_duration_since(e.at) < DATE_REFUSAL_REUSE
                })
                .map(|e| Arc::clone(&e.result))
        };
        if let Some(result) = usable() {
            return result;
        }
        // Single flight: whoever comes second waits for the first verification and uses it.
        let _verifying = self
            .inner
            .verifying
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(result) = usable() {
            return result;
        }
        let result = verify();
        self.store(key, now(), result)
    }

    /// Replaces `stale`, the result memoized for `key`, with `verify()`, unless another
    /// request of the connection already replaced it (then that result is returned).
    pub(crate) fn reverified(
        &self,
        key: MemoKey,
        stale: &Arc<ChainResult>,
        verify: impl FnOnce() -> ChainResult,
    ) -> Arc<ChainResult> {
        let _verifying = self
            .inner
            .verifying
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self
            .inner
            .memo
            .load()
            .iter()
            .find(|e| e.key == key)
            .map(|e| Arc::clone(&e.result));
        if let Some(current) = current
            && !Arc::ptr_eq(&current, stale)
        {
            return current;
        }
        let result = verify();
        self.store(key, Instant::now(), result)
    }

    /// Remembers `result` for `key` (replacing an earlier one) and returns it.
    fn store(&self, key: MemoKey, at: Instant, result: ChainResult) -> Arc<ChainResult> {
        let result = Arc::new(result);
        let entry = MemoEntry {
            key,
            result: Arc::clone(&result),
            at,
        };
        self.inner.memo.rcu(|entries| {
            let mut next: Vec<MemoEntry> =
                entries.iter().filter(|e| e.key != key).cloned().collect();
            if next.len() >= MEMO_CAPACITY {
                next.remove(0);
            }
            next.push(entry.clone());
            next
        });
        result
    }
}

impl From<Vec<CertificateDer<'static>>> for PeerCertificates {
    fn from(chain: Vec<CertificateDer<'static>>) -> Self {
        Self::new(chain)
    }
}

/// Shows the number of certificates, not their bytes.
impl fmt::Debug for PeerCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificates")
            .field("certificates", &self.inner.chain.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_chain_and_the_memo() {
        let peers = PeerCertificates::new(vec![CertificateDer::from(vec![1, 2, 3])]);
        let other = peers.clone();
        assert!(Arc::ptr_eq(&peers.inner, &other.inner));
        assert_eq!(other.chain().len(), 1);
        assert!(other.intermediates().is_empty());
        assert!(!other.is_empty());
        assert!(PeerCertificates::new(Vec::new()).intermediates().is_empty());
        assert_eq!(
            format!("{peers:?}"),
            "PeerCertificates { certificates: 1, .. }"
        );
    }

    #[test]
    fn memo_keeps_a_bounded_number_of_results() {
        use crate::verify::{ChainResult, Validity};
        let peers = PeerCertificates::new(vec![CertificateDer::from(vec![1])]);
        let mut calls = 0;
        for generation in 0..20 {
            for _ in 0..3 {
                peers.memoized(
                    MemoKey {
                        generation,
                        usage: 0,
                    },
                    || {
                        calls += 1;
                        ChainResult::Verified(Validity::ALWAYS)
                    },
                );
            }
        }
        assert_eq!(calls, 20);
        assert_eq!(peers.inner.memo.load().len(), MEMO_CAPACITY);
    }

    #[test]
    fn concurrent_misses_verify_once() {
        use crate::verify::{ChainResult, Validity};
        use std::sync::Barrier;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let peers = PeerCertificates::new(vec![CertificateDer::from(vec![1])]);
        let calls = AtomicUsize::new(0);
        let start = Barrier::new(8);
        let key = MemoKey {
            generation: 1,
            usage: 0,
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    start.wait();
                    peers.memoized(key, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Long enough for every other thread to miss the memo meanwhile.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        ChainResult::Verified(Validity::ALWAYS)
                    });
                });
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_refusal_for_dates_is_reused_for_a_second_then_verified_again() {
        use crate::verify::{ChainResult, Reason, Validity};
        let peers = PeerCertificates::new(vec![CertificateDer::from(vec![1])]);
        let key = MemoKey {
            generation: 1,
            usage: 0,
        };
        let not_yet = || {
            ChainResult::Rejected(Reason::NotYetValid {
                now: 0,
                not_before: 1,
            })
        };
        let mut answers = vec![
            ChainResult::Verified(Validity::ALWAYS),
            not_yet(),
            not_yet(),
        ];
        let t0 = Instant::now();
        let mut verified_at = Vec::new();
        for ms in [0, 500, 999, 1500, 1600, 2600, 2700, 60_000] {
            let at = t0 + Duration::from_millis(ms);
            let result = peers.memoized_with(
                key,
                || at,
                || {
                    verified_at.push(ms);
                    answers.pop().unwrap()
                },
            );
            assert_eq!(result.is_cacheable(), ms >= 2600, "at {ms} ms");
        }
        // A refusal for the dates is reused for a second; the verified chain is kept.
        assert_eq!(verified_at, [0, 1500, 2600]);
    }
}
