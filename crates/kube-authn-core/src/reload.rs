//! Hot reload of file-backed state: read -> parse -> validate -> `ArcSwap::store`.
//!
//! [`Reloading::watch`] loads a file once (that load must succeed), then a background thread
//! watches the file's directory with `notify` (editors and Kubernetes ConfigMaps replace files by
//! rename or by swapping a `..data` symlink), debounces bursts of events, and re-stats the file
//! periodically as a fallback for events that never come. A file that fails to read or parse
//! never replaces the current value: the error is logged with the file (and line, when the
//! parser knows it), counted in `kube_authn_file_reloads_total{result="failure"}` and kept in
//! [`Reloading::status`]. Readers do one lock-free `load()`; nothing on the request path waits
//! for the disk or a lock.

use std::fmt;
use std::fs;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

thread_local! {
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lets a long parse share the CPU with the threads serving requests: on the background reload
/// thread, after every 20 µs of work, it gives way when other threads want the core; anywhere
/// else it does nothing. Call it often (every few microseconds of work: the static files call
/// it every 32 rows, the reload itself reads, hashes and wipes files in 64 KiB pieces with a
/// call between them); until a piece is done it only reads the clock.
///
/// A reload competes with request handling for the same cores. After a piece it yields: on an
/// idle core that returns at once (a 100,000-line token file is in force after ~12 ms here).
/// A yield that took 200 µs or more found request threads waiting (the core is busy): the
/// pieces of the next 20 ms are each followed by a 200 µs sleep instead, then a yield looks
/// again. Requests then lose the core for 20 µs at a time, under a tenth of it for the first
/// 100 ms; after that the sleeps shorten (the reload takes up to about a third of the core), so
/// that a long reload still ends. Yielding alone
/// gives a saturated core's thread a scheduler slice (~1 ms) before the reload runs again:
/// with 16 µs pieces the same reload took 258–613 ms there, against 117–181 ms paced, with the
/// same effect on p99 (`scripts/bench-load.sh`; README, Benchmarks).
pub fn cooperate() {
    if !BACKGROUND.get() {
        return;
    }
    let pace = step(
        PACE.get(),
        Instant::now,
        std::thread::sleep,
        std::thread::yield_now,
    );
    PACE.set(Some(pace));
}

/// One call of [`cooperate`] on the background thread, with the clock and the two ways of
/// giving way passed in.
fn step(
    pace: Option<Pace>,
    clock: impl Fn() -> Instant,
    sleep: impl FnOnce(Duration),
    yield_now: impl FnOnce(),
) -> Pace {
    let now = clock();
    let mut pace = pace.unwrap_or_else(|| Pace::new(now));
    match pace.next(now) {
        GiveWay::Not => {}
        GiveWay::Sleep(pause) => {
            sleep(pause);
            pace.last = clock();
        }
        GiveWay::Yield => {
            yield_now();
            pace.yielded(now, clock());
        }
    }
    pace
}

/// Starts the pacing of a piece of background work (a reload, the wipe of a replaced value):
/// see [`cooperate`].
fn start_pacing() {
    PACE.set(Some(Pace::new(Instant::now())));
}

/// How long the background thread works between two looks at whether to give way.
const PIECE_TIME: Duration = Duration::from_micros(20);
/// A yield that took this long found other threads waiting for the core.
const BUSY: Duration = Duration::from_micros(200);
/// How long a busy core is taken to stay busy before a yield looks again.
const BUSY_HOLD: Duration = Duration::from_millis(20);

/// Where the background thread is in its pacing (see [`cooperate`]).
#[derive(Clone, Copy)]
struct Pace {
    /// When the work began.
    since: Instant,
    /// The end of the last pause: the start of the current piece.
    last: Instant,
    /// Until when the core is taken to be busy.
    busy_until: Option<Instant>,
}

/// What [`cooperate`] does after a piece of work.
#[derive(Debug, PartialEq, Eq)]
enum GiveWay {
    /// Nothing: the piece is not done.
    Not,
    /// A yield, which also tells whether the core is busy.
    Yield,
    /// A sleep: the core is busy.
    Sleep(Duration),
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            since: now,
            last: now,
            busy_until: None,
        }
    }

    fn next(&self, now: Instant) -> GiveWay {
        if now.saturating_duration_since(self.last) < PIECE_TIME {
            return GiveWay::Not;
        }
        match self.busy_until {
            Some(until) if now < until => GiveWay::Sleep(self.pause(now)),
            _ => GiveWay::Yield,
        }
    }

    /// A yield from `start` to `end`: when it took long, other threads were waiting.
    fn yielded(&mut self, start: Instant, end: Instant) {
        let busy = end.saturating_duration_since(start) >= BUSY;
        self.busy_until = busy.then(|| start + BUSY_HOLD);
        self.last = end;
    }

    /// The pause after a piece on a busy core: 200 µs (under a tenth of the core for the work,
    /// with the piece and the timer's slack), shorter once the work has taken 100 ms, so that
    /// the reload of a file like the benchmarks' (100,000 lines) still ends within about 200 ms
    /// when the core is slow to give; a much larger file takes longer.
    fn pause(&self, now: Instant) -> Duration {
        match now.saturating_duration_since(self.since).as_millis() {
            0..100 => Duration::from_micros(200),
            100..150 => Duration::from_micros(100),
            _ => Duration::from_micros(40),
        }
    }
}

thread_local! {
    static PACE: std::cell::Cell<Option<Pace>> = const { std::cell::Cell::new(None) };
}
/// Turns a file's bytes into a value. Errors should name the file and line.
pub trait Parse: Send + Sync + 'static {
    /// The parsed value.
    type Output: Send + Sync + 'static;
    /// Why the bytes were refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Parses the content of `path`.
    fn parse(&self, path: &Path, bytes: &[u8]) -> Result<Self::Output, Self::Error>;
}

impl<F, T, E> Parse for F
where
    F: Fn(&Path, &[u8]) -> Result<T, E> + Send + Sync + 'static,
    T: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    type Output = T;
    type Error = E;

    fn parse(&self, path: &Path, bytes: &[u8]) -> Result<T, E> {
        self(path, bytes)
    }
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError<E: std::error::Error + 'static> {
    /// The file could not be read.
    #[error("unable to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The content was refused by the parser.
    #[error(transparent)]
    Parse(E),
    /// The watcher could not be started.
    #[error("unable to watch {}: {source}", path.display())]
    Watch {
        /// The file.
        path: PathBuf,
        /// The notify error.
        #[source]
        source: notify::Error,
    },
}

/// How a watched file is re-checked.
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    debounce: Duration,
    poll_interval: Duration,
    write_settle: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            poll_interval: Duration::from_secs(1),
            write_settle: Duration::from_secs(2),
        }
    }
}

impl ReloadOptions {
    /// How long the directory must be quiet after an event before the file is read
    /// (default 100 ms), so a burst of writes is read once.
    #[must_use]
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// How long a writer that has the file open may pause before what it wrote so far is read
    /// anyway (default 2 s).
    ///
    /// On Linux, where the watcher sees a writer close the file, a file written in place is
    /// read once its writer has closed it: a half-written file that happens to parse (its
    /// first lines) is never put in force. A writer that keeps the file open and writes
    /// nothing for this long is taken to be done; whatever it does, the file is read at
    /// most 30 s after the first write seen.
    #[must_use]
    pub fn write_settle(mut self, settle: Duration) -> Self {
        self.write_settle = settle;
        self
    }

    /// How often the file is re-stat'ed when no event arrives (default 1 s). A stat is one
    /// syscall; the file is read only when its size, mtime, status change time or inode
    /// changed.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }
}

/// What happened to a watched file so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Successful reloads after the initial load.
    pub reloads: u64,
    /// Reloads refused (unreadable or invalid file); the previous value stayed.
    pub failures: u64,
    /// The last refusal, with file and line when known; cleared by the next successful reload.
    pub last_error: Option<String>,
}

struct Shared {
    path: PathBuf,
    status: Mutex<ReloadStatus>,
}

/// Stops the watcher thread (which owns the watcher) when the last [`Reloading`] clone is
/// dropped.
struct WatchGuard {
    stop: Mutex<mpsc::Sender<Msg>>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = stop.send(Msg::Stop);
    }
}

enum Msg {
    /// An event about our file itself: read it.
    OurFile,
    /// Our file was written to by a writer that has not closed it yet (Linux): read it once
    /// the writer closes it.
    Written,
    /// A writer of our file closed it (Linux).
    Closed,
    /// The file's directory was removed or moved away: watch its path anew once it exists.
    LostOwn,
    /// The directory of the symlinks' target was: the same.
    LostTarget,
    /// An event elsewhere in the directory: re-stat.
    Directory,
    Stop,
}

/// A value loaded from a file and kept current.
pub struct Reloading<T> {
    value: Arc<ArcSwap<T>>,
    shared: Option<Arc<Shared>>,
    _guard: Option<Arc<WatchGuard>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            shared: self.shared.clone(),
            _guard: self._guard.clone(),
        }
    }
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field(
                "path",
                &self.shared.as_ref().map(|s| s.path.display().to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// A fixed value (no file).
    pub fn fixed(value: T) -> Self {
        Self {
            value: Arc::new(ArcSwap::from_pointee(value)),
            shared: None,
            _guard: None,
        }
    }

    /// Loads `path` once, without watching it.
    pub fn load<P>(path: impl Into<PathBuf>, parser: P) -> Result<Self, LoadError<P::Error>>
    where
        P: Parse<Output = T>,
    {
        let path = path.into();
        let bytes = read(&path)?;
        let value = parser.parse(&path, &bytes).map_err(LoadError::Parse)?;
        Ok(Self {
            value: Arc::new(ArcSwap::from_pointee(value)),
            shared: Some(Arc::new(Shared {
                path,
                status: Mutex::new(ReloadStatus::default()),
            })),
            _guard: None,
        })
    }

    /// Loads `path` (this first load must succeed) and keeps the value current in a background
    /// thread until the last clone of the returned value is dropped.
    pub fn watch<P>(
        path: impl Into<PathBuf>,
        parser: P,
        options: ReloadOptions,
    ) -> Result<Self, LoadError<P::Error>>
    where
        P: Parse<Output = T>,
    {
        let path = path.into();
        // The watcher runs and the file's identity is taken before the first read: a change
        // made while the file is read and parsed is then an event or a new identity for the
        // loop, never lost (a large file takes a while to parse).
        let (tx, rx) = mpsc::channel();
        let target_name = TargetName::default();
        let mut watcher = match start_watcher(&path, tx.clone(), Arc::clone(&target_name)) {
            Ok(watcher) => watcher,
            Err(source) => {
                // A missing file (or directory) is reported as such.
                read::<P::Error>(&path)?;
                return Err(LoadError::Watch { path, source });
            }
        };
        let own = Target {
            dir: own_dir(&path),
            id: dir_id(&own_dir(&path)),
        };
        let mut target = None;
        follow_target(&mut watcher, &path, &mut target, &target_name);
        let id = FileId::of(&path);
        let bytes = read(&path)?;
        let value = parser.parse(&path, &bytes).map_err(LoadError::Parse)?;
        let value = Arc::new(ArcSwap::from_pointee(value));
        let shared = Arc::new(Shared {
            path: path.clone(),
            status: Mutex::new(ReloadStatus::default()),
        });
        let state = WatchState {
            id,
            hash: hash(&bytes),
            in_force: hash(&bytes),
            refused: None,
        };
        let thread_value = Arc::clone(&value);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kube-authn-reload".into())
            .spawn(move || {
                BACKGROUND.set(true);
                let mut watch = Watch {
                    watcher,
                    own,
                    target,
                    target_name,
                    state,
                };
                watch_loop(
                    &rx,
                    &options,
                    &mut watch,
                    &parser,
                    &thread_value,
                    &thread_shared,
                );
            })
            .map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            value,
            shared: Some(shared),
            _guard: Some(Arc::new(WatchGuard {
                stop: Mutex::new(tx),
            })),
        })
    }
}

impl<T> Reloading<T> {
    /// The current value: one lock-free load.
    pub fn current(&self) -> arc_swap::Guard<Arc<T>> {
        self.value.load()
    }

    /// The current value as an owned `Arc`.
    pub fn snapshot(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// The file, if the value came from one.
    pub fn path(&self) -> Option<&Path> {
        self.shared.as_deref().map(|s| s.path.as_path())
    }

    /// Reload counters and the last refusal.
    pub fn status(&self) -> ReloadStatus {
        self.shared
            .as_ref()
            .map(|s| {
                s.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }
}

fn read<E: std::error::Error>(path: &Path) -> Result<FileBytes, LoadError<E>> {
    read_paced(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// How much of a file is read, hashed or wiped between two calls to [`cooperate`].
const PIECE: usize = 64 * 1024;

/// A file's content, wiped when dropped (it may hold secrets), in pieces: see [`cooperate`].
struct FileBytes(Vec<u8>);

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for FileBytes {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `bytes` with zeros, a piece at a time.
fn wipe(bytes: &mut [u8]) {
    for piece in bytes.chunks_mut(PIECE) {
        zeroize::Zeroize::zeroize(piece);
        cooperate();
    }
}

/// Overwrites `text` with zeros (NUL characters) a piece at a time, calling [`cooperate`]
/// between pieces: for a parsed value that holds secrets, from its `Drop`. The reload drops a
/// replaced value on its background thread, so a large table is wiped there without holding
/// the request threads.
pub fn wipe_str(text: &mut str) {
    let mut start = 0;
    while start < text.len() {
        let mut end = start.saturating_add(PIECE).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if let Some(piece) = text.get_mut(start..end) {
            zeroize::Zeroize::zeroize(piece);
        }
        cooperate();
        start = end;
    }
}

/// Reads the whole file a piece at a time, into a buffer sized once from its length. A file
/// too large for memory is an error (as with `fs::read`), not an abort.
fn read_paced(path: &Path) -> std::io::Result<FileBytes> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut bytes = FileBytes(Vec::new());
    bytes
        .0
        .try_reserve_exact(
            usize::try_from(size)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e))?;
    loop {
        let piece = (&mut file).take(PIECE as u64).read_to_end(&mut bytes.0)?;
        if piece == 0 {
            return Ok(bytes);
        }
        cooperate();
    }
}

/// A hash of the content, to skip re-parsing a file whose bytes did not change (a touch, a
/// rewrite with the same content). foldhash reads a 6 MB file in about a millisecond (SipHash
/// took ten), here a piece at a time; its seed is random per process, so nobody who only
/// controls part of a generated file can craft a new version that hashes like the old one and
/// so is never loaded.
fn hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    static SEED: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    let mut hasher = SEED
        .get_or_init(foldhash::quality::RandomState::default)
        .build_hasher();
    hasher.write_usize(bytes.len());
    for piece in bytes.chunks(PIECE) {
        hasher.write(piece);
        cooperate();
    }
    hasher.finish()
}

/// What a stat says about the file (following symlinks). The status change time is in it
/// because every write changes it and nobody can set it back (`touch -r`, `cp -p`,
/// `rsync -a --inplace` restore the mtime): a rewrite of the same size that keeps the mtime
/// is still a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    inode: u64,
    device: u64,
}

impl FileId {
    fn of(path: &Path) -> Option<Self> {
        let m = fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (inode, device, changed) = {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.dev(), (m.ctime(), m.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (inode, device, changed) = (0, 0, (0, 0));
        Some(Self {
            len: m.len(),
            modified: m.modified().ok(),
            changed,
            inode,
            device,
        })
    }
}

struct WatchState {
    id: Option<FileId>,
    /// The hash of the content last read (parsed, or refused).
    hash: u64,
    /// The hash of the content whose value is in force.
    in_force: u64,
    /// Why the content last read was refused, when it was.
    refused: Option<String>,
}

/// What the symlinks lead to, shared with the watcher's callback: the target file's name
/// (events about it are events about our file) and its directory when it is another one
/// (watched too).
#[derive(Default)]
struct Followed {
    name: Option<std::ffi::OsString>,
    dir: Option<PathBuf>,
}

type TargetName = Arc<Mutex<Followed>>;

fn start_watcher(
    path: &Path,
    tx: mpsc::Sender<Msg>,
    target_name: TargetName,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    // As notify names the directory in its events: joined to the working directory when
    // relative (not normalized).
    let dir = match std::env::current_dir() {
        Ok(cwd) => cwd.join(own_dir(path)),
        Err(_) => own_dir(path),
    };
    let name = path.file_name().map(ToOwned::to_owned);
    let tx = Mutex::new(tx);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        let Ok(event) = event else { return };
        let closed_after_write = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if matches!(event.kind, EventKind::Access(_)) && !closed_after_write {
            return;
        }
        let followed = target_name.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| Some(n) == name.as_deref() || Some(n) == followed.name.as_deref())
        });
        // A watched directory itself removed or moved away: its watch is gone (or follows
        // it elsewhere).
        let lost = match event.kind {
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                if event.paths.contains(&dir) {
                    Some(Msg::LostOwn)
                } else if event
                    .paths
                    .iter()
                    .any(|p| followed.dir.as_deref() == Some(p.as_path()))
                {
                    Some(Msg::LostTarget)
                } else {
                    None
                }
            }
            _ => None,
        };
        drop(followed);
        let msg = match (event.kind, lost) {
            (_, Some(lost)) => lost,
            _ if closed_after_write => match ours {
                true => Msg::Closed,
                false => return,
            },
            // Only where the watcher also reports the writer's close (inotify).
            (EventKind::Modify(ModifyKind::Data(_)), _) if ours && SEES_CLOSE => Msg::Written,
            _ if ours => Msg::OurFile,
            _ => Msg::Directory,
        };
        let tx = tx.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = tx.send(msg);
    })?;
    watcher.watch(&own_dir(path), RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// The directory of `path` (watched).
fn own_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Watches the file's own directory again when it was removed and made again (or another
/// one renamed to its name): the watch went with the old one, and without events every
/// change would wait for the periodic re-stat.
fn follow_own_dir(watcher: &mut notify::RecommendedWatcher, own: &mut Target) {
    use notify::{RecursiveMode, Watcher};
    let id = dir_id(&own.dir);
    if id == own.id {
        return;
    }
    // Fails when the directory is gone (the watch went with it): nothing to undo then.
    let _ = watcher.unwatch(&own.dir);
    if id.is_some() {
        tracing::debug!(dir = %own.dir.display(), "watching the directory again (it was made anew)");
    }
    own.id = match id {
        Some(_) if watcher.watch(&own.dir, RecursiveMode::NonRecursive).is_ok() => id,
        _ => None,
    };
}

/// Whether the watcher reports that a writer closed a file (inotify's `IN_CLOSE_WRITE`), so that
/// a file written in place can be read once its writer is done.
const SEES_CLOSE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// How long at most the reading of a file that is being written waits for its writer.
const WRITING_CAP: Duration = Duration::from_secs(30);

/// The directory of the file the symlinks lead to, watched besides the file's own directory,
/// and its identity (a directory removed and made again, or another one renamed to its name,
/// is watched anew).
#[derive(Debug, PartialEq, Eq)]
struct Target {
    dir: PathBuf,
    id: Option<(u64, u64)>,
}

/// The identity (device, inode) of a directory.
fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    let m = fs::metadata(dir).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        None
    }
}

/// When `path` resolves (through symlinks) to another file, events about that file count as
/// events about ours; when it is in another directory, that directory is watched too, so that
/// a write to the file itself (through the symlink) is an event rather than something the
/// periodic re-stat finds. Followed to wherever the symlinks lead now; called before each read, so a
/// write made after the read is seen.
fn follow_target(
    watcher: &mut notify::RecommendedWatcher,
    path: &Path,
    target: &mut Option<Target>,
    target_name: &TargetName,
) {
    use notify::{RecursiveMode, Watcher};
    let dir_of = |p: &Path| p.parent().map(Path::to_owned);
    let own = dir_of(path)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let own = fs::canonicalize(own).ok();
    let resolved = fs::canonicalize(path).ok();
    let want = resolved
        .as_deref()
        .and_then(dir_of)
        .filter(|d| Some(d) != own.as_ref())
        .map(|dir| Target {
            id: dir_id(&dir),
            dir,
        });
    // The target's name, in its directory or in ours (`n -> real`: events about `real` are
    // about our file).
    let name = resolved
        .as_deref()
        .and_then(Path::file_name)
        .map(ToOwned::to_owned);
    target_name
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .name = name;
    if want == *target {
        return;
    }
    if let Some(old) = target.take() {
        // Fails when the directory is gone (the watch went with it): nothing to undo then.
        let _ = watcher.unwatch(&old.dir);
    }
    if let Some(new) = want
        && watcher.watch(&new.dir, RecursiveMode::NonRecursive).is_ok()
    {
        *target = Some(new);
    }
    target_name
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .dir = target.as_ref().map(|t| t.dir.clone());
}

/// The watcher thread's state: the watcher, the directory of the symlinks' target it also
/// watches (and that file's name, shared with the watcher's callback), and what was read last.
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// The file's own directory and its identity when it was watched.
    own: Target,
    target: Option<Target>,
    target_name: TargetName,
    state: WatchState,
}

/// Which watched directories were removed or moved away since the last check.
#[derive(Default)]
struct Lost {
    own: bool,
    target: bool,
}

fn watch_loop<P: Parse>(
    rx: &mpsc::Receiver<Msg>,
    options: &ReloadOptions,
    watch: &mut Watch,
    parser: &P,
    value: &ArcSwap<P::Output>,
    shared: &Shared,
) {
    let mut lost = Lost::default();
    loop {
        let force = match rx.recv_timeout(options.poll_interval) {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => false,
            Ok(first) => match settle(first, rx, options, &mut lost) {
                Some(force) => force,
                None => return,
            },
        };
        // Fails when the watch went with the directory: nothing to undo then.
        if lost.own {
            let _ = notify::Watcher::unwatch(&mut watch.watcher, &watch.own.dir);
            watch.own.id = None;
        }
        if lost.target
            && let Some(target) = watch.target.take()
        {
            let _ = notify::Watcher::unwatch(&mut watch.watcher, &target.dir);
        }
        lost = Lost::default();
        follow_own_dir(&mut watch.watcher, &mut watch.own);
        follow_target(
            &mut watch.watcher,
            &shared.path,
            &mut watch.target,
            &watch.target_name,
        );
        check(force, &mut watch.state, parser, value, shared);
    }
}

/// After a first event: waits until the directory has been quiet for the debounce (a burst
/// of writes is read once), never longer than `max(poll interval, 4 debounces)` however busy
/// the directory is; and, while a writer has our file open (it wrote and has not closed it),
/// until it closes it, pauses for [`ReloadOptions::write_settle`], or [`WRITING_CAP`] passed.
/// Whether our file was named by an event (`None`: stop).
/// Directories whose watch was lost are noted in `lost`.
fn settle(
    first: Msg,
    rx: &mpsc::Receiver<Msg>,
    options: &ReloadOptions,
    lost: &mut Lost,
) -> Option<bool> {
    use std::time::Instant;
    let max_wait = options.poll_interval.max(options.debounce * 4);
    let start = Instant::now();
    let mut force = false;
    // The last write of a writer that has not closed the file yet.
    let mut writing: Option<Instant> = None;
    // The last close: a debounce of quiet after it, as after any event.
    let mut closed = start;
    let mut msg = first;
    loop {
        match msg {
            Msg::Stop => return None,
            Msg::Directory => {}
            Msg::LostOwn => lost.own = true,
            Msg::LostTarget => lost.target = true,
            Msg::OurFile => force = true,
            Msg::Written => {
                force = true;
                writing = Some(Instant::now());
            }
            Msg::Closed => {
                force = true;
                writing = None;
                closed = Instant::now();
            }
        }
        let cap = start + WRITING_CAP;
        let deadline = match writing {
            Some(last) => (last + options.write_settle).min(cap),
            None => (start + max_wait).max(closed + options.debounce).min(cap),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(force);
        }
        let wait = match writing {
            Some(_) => left,
            None => options.debounce.min(left),
        };
        msg = match rx.recv_timeout(wait) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Disconnected) => return None,
            // Quiet for the debounce with no writer, or the deadline.
            Err(RecvTimeoutError::Timeout) => return Some(force),
        };
    }
}

fn check<P: Parse>(
    force: bool,
    state: &mut WatchState,
    parser: &P,
    value: &ArcSwap<P::Output>,
    shared: &Shared,
) {
    let path = &shared.path;
    let id = FileId::of(path);
    if id.is_none() {
        // Missing (deleted, or moved away): keep the current value and look again later. Said
        // once per disappearance, as a warning: whoever deleted the file to revoke its
        // credentials learns that they still work.
        if state.id.is_some() {
            tracing::warn!(path = %path.display(), "watched file is missing; keeping the current value until it is back");
        } else {
            tracing::debug!(path = %path.display(), "watched file is still missing");
        }
        state.id = None;
        return;
    }
    if !force && id == state.id {
        return;
    }
    let started = std::time::Instant::now();
    start_pacing();
    let bytes = match read_paced(path) {
        Ok(b) => b,
        Err(e) => {
            // Not remembered as seen: the next tick tries again.
            refuse(
                shared,
                format!("unable to read {}: {e}", path.display()),
                Repeat::Quiet,
            );
            return;
        }
    };
    if FileId::of(path) != id {
        // Written while it was read: what was read may be half of it. Not remembered as
        // seen: the write's event (or the next tick) reads it again.
        tracing::debug!(path = %path.display(), "the file changed while it was read; reading it again");
        return;
    }
    state.id = id;
    let h = hash(&bytes);
    if h == state.hash {
        // Readable again with the same content: what holds is what was said of it (nothing
        // when it is the content in force, else why it was refused), not a read error since.
        let mut status = shared.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.last_error = if h == state.in_force {
            None
        } else {
            state.refused.clone()
        };
        return;
    }
    state.hash = h;
    match parser.parse(path, &bytes) {
        Ok(parsed) => {
            // The swap and the status change under the status lock: whoever sees the new
            // status then sees the new value, and whoever saw the new value and then asks
            // for the status waits for it to be updated.
            let mut status = shared.status.lock().unwrap_or_else(PoisonError::into_inner);
            let previous = value.swap(Arc::new(parsed));
            state.in_force = h;
            state.refused = None;
            status.reloads += 1;
            status.last_error = None;
            drop(status);
            // The time until the new value is in force (read, hash, parse, swap).
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            metrics::counter!("kube_authn_file_reloads_total", "result" => "success").increment(1);
            tracing::info!(path = %path.display(), elapsed_ms, "reloaded");
            release_here(previous);
        }
        Err(e) => {
            let message = e.to_string();
            state.refused = Some(message.clone());
            refuse(shared, message, Repeat::Loud);
        }
    }
}

/// Drops the replaced value on this (background) thread rather than on the request thread that
/// happens to release the last reference: freeing (and wiping) a large table takes time.
/// Readers hold the value only for a lookup, so this waits a few milliseconds at most; a value
/// still held after 100 ms (a long-lived snapshot) is left to its holder.
fn release_here<T>(previous: Arc<T>) {
    for _ in 0..100 {
        if Arc::strong_count(&previous) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The wipe of a large value is paced as a reload is, from its own start.
    start_pacing();
    drop(previous);
}

/// Whether a refusal that repeats the last one is logged as an error again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Tried again on every tick (an unreadable file): said once, then at debug level.
    Quiet,
    /// Tried once per change of the content (a file that does not parse): always said.
    Loud,
}

/// Counts a refused reload and logs it as an error (see [`Repeat`]).
fn refuse(shared: &Shared, message: String, repeat: Repeat) {
    metrics::counter!("kube_authn_file_reloads_total", "result" => "failure").increment(1);
    let mut status = shared.status.lock().unwrap_or_else(PoisonError::into_inner);
    if repeat == Repeat::Quiet && status.last_error.as_deref() == Some(message.as_str()) {
        tracing::debug!(path = %shared.path.display(), error = %message, "still refusing to reload; keeping the previous content");
    } else {
        tracing::error!(path = %shared.path.display(), error = %message, "refused to reload; keeping the previous content");
    }
    status.failures += 1;
    status.last_error = Some(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_of_work_goes_on_until_its_time_is_up() {
        let t0 = Instant::now();
        let pace = Pace::new(t0);
        assert_eq!(pace.next(t0 + Duration::from_micros(19)), GiveWay::Not);
        assert_eq!(pace.next(t0 + PIECE_TIME), GiveWay::Yield);
    }

    #[test]
    fn a_quick_yield_finds_the_core_free_and_the_work_goes_on_without_sleeping() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let start = t0 + PIECE_TIME;
        pace.yielded(start, start + Duration::from_micros(3));
        let next = start + Duration::from_micros(3) + PIECE_TIME;
        assert_eq!(pace.next(next - Duration::from_micros(1)), GiveWay::Not);
        assert_eq!(pace.next(next), GiveWay::Yield);
    }

    #[test]
    fn a_slow_yield_finds_the_core_busy_and_the_next_pieces_sleep_until_it_is_looked_at_again() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        let start = t0 + PIECE_TIME;
        let end = start + Duration::from_millis(1);
        pace.yielded(start, end);
        assert_eq!(pace.next(end), GiveWay::Not);
        assert_eq!(
            pace.next(end + PIECE_TIME),
            GiveWay::Sleep(Duration::from_micros(200))
        );
        pace.last = start + BUSY_HOLD - 2 * PIECE_TIME;
        assert_eq!(
            pace.next(start + BUSY_HOLD - Duration::from_nanos(1)),
            GiveWay::Sleep(Duration::from_micros(200))
        );
        assert_eq!(pace.next(start + BUSY_HOLD), GiveWay::Yield);
        // The next look finds it free: no more sleeps.
        let later = start + BUSY_HOLD;
        pace.yielded(later, later + Duration::from_micros(2));
        assert_eq!(
            pace.next(later + Duration::from_micros(2) + PIECE_TIME),
            GiveWay::Yield
        );
    }

    /// `cooperate` on a simulated clock: each call follows 5 µs of work; a yield takes 1 ms
    /// (a busy core) or 2 µs (a free one); a sleep takes its pause.
    fn simulate(calls: usize, yield_takes: Duration) -> Vec<(Duration, &'static str)> {
        let clock = std::cell::Cell::new(Instant::now());
        let advance = |d: Duration| clock.set(clock.get() + d);
        let (mut pace, mut gave) = (None, Vec::new());
        let mut work = Duration::ZERO;
        for _ in 0..calls {
            advance(Duration::from_micros(5));
            work += Duration::from_micros(5);
            let how = std::cell::Cell::new(None);
            pace = Some(step(
                pace,
                || clock.get(),
                |pause| {
                    advance(pause);
                    how.set(Some("sleep"));
                },
                || {
                    advance(yield_takes);
                    how.set(Some("yield"));
                },
            ));
            if let Some(how) = how.get() {
                gave.push((std::mem::take(&mut work), how));
            }
        }
        gave
    }

    #[test]
    fn on_a_busy_core_pieces_of_work_alternate_with_sleeps() {
        let gave = simulate(2_000, Duration::from_millis(1));
        assert!(gave.iter().all(|(work, _)| *work >= PIECE_TIME), "{gave:?}");
        let sleeps = gave.iter().filter(|(_, how)| *how == "sleep").count();
        let yields = gave.len() - sleeps;
        // A yield per 20 ms of busy core (the look), sleeps in between.
        assert!(sleeps > 10 * yields, "{sleeps} sleeps, {yields} yields");
    }

    #[test]
    fn on_a_free_core_pieces_of_work_only_yield() {
        let gave = simulate(2_000, Duration::from_micros(2));
        assert!(gave.iter().all(|(work, _)| *work >= PIECE_TIME), "{gave:?}");
        assert!(gave.iter().all(|(_, how)| *how == "yield"), "{gave:?}");
        // A give-way per 20 µs of the 10 ms of work (the first piece starts at the first call).
        assert!((495..=500).contains(&gave.len()), "{}", gave.len());
    }

    #[test]
    fn the_pauses_shorten_as_the_work_ages_so_that_it_ends_in_time() {
        let t0 = Instant::now();
        let pace = Pace::new(t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(pace.pause(at(0)), Duration::from_micros(200));
        assert_eq!(pace.pause(at(99)), Duration::from_micros(200));
        assert_eq!(pace.pause(at(100)), Duration::from_micros(100));
        assert_eq!(pace.pause(at(150)), Duration::from_micros(40));
        assert_eq!(pace.pause(at(10_000)), Duration::from_micros(40));
    }
    use std::time::Instant;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Bad(String);

    fn numbers(path: &Path, bytes: &[u8]) -> Result<Vec<u32>, Bad> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Bad(format!("{}: not utf-8", path.display())))?;
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                l.trim()
                    .parse()
                    .map_err(|_| Bad(format!("{}:{}: not a number", path.display(), i + 1)))
            })
            .collect()
    }

    /// The log lines of every thread (the watcher's included), from a global subscriber
    /// installed once for this test binary.
    fn logs() -> String {
        use std::sync::OnceLock;
        static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
        #[derive(Clone)]
        struct Writer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Writer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = LOGS.get_or_init(|| {
            let logs = Arc::new(Mutex::new(Vec::new()));
            let writer = Writer(Arc::clone(&logs));
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        });
        String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
    }

    #[test]
    fn a_missing_file_is_a_warning_once_and_the_value_stays() {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-once");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        fs::remove_file(&path).unwrap();
        let ours = |level: &str| {
            logs()
                .lines()
                .filter(|l| l.contains(level) && l.contains("missing-once"))
                .count()
        };
        wait_for("the warning", || ours("WARN") == 1);
        // Several more checks (poll ticks) while it stays missing: no second warning.
        wait_for("a later check", || ours("DEBUG") >= 2);
        assert_eq!(ours("WARN"), 1);
        assert_eq!(*r.current().as_ref(), vec![1], "the value stays");
        // Back, then gone again: a new disappearance is said again.
        fs::write(&path, "2\n").unwrap();
        wait_for("the file back", || *r.current().as_ref() == vec![2]);
        fs::remove_file(&path).unwrap();
        wait_for("the second warning", || ours("WARN") == 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_refusal_repeated_on_every_tick_is_logged_as_an_error_once() {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unreadable-once");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        // A directory in the file's place: it stats, but cannot be read (even by root).
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        wait_for("three refusals", || r.status().failures >= 3);
        let errors = logs()
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("unreadable-once"))
            .count();
        assert_eq!(errors, 1, "{}", logs());
        assert_eq!(*r.current().as_ref(), vec![1]);
        assert!(r.status().last_error.unwrap().starts_with("unable to read"));

        // Back with the content in force: the refusal no longer holds.
        fs::remove_dir(&path).unwrap();
        fs::write(&path, "1\n").unwrap();
        wait_for("the error cleared", || r.status().last_error.is_none());
        // A second outage is said again.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        wait_for("the second error", || {
            logs()
                .lines()
                .filter(|l| l.contains("ERROR") && l.contains("unreadable-once"))
                .count()
                == 2
        });
    }

    #[test]
    fn every_bad_edit_is_logged_as_an_error() {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-edits");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        // Two different bad contents with the same message (line 1 is not a number).
        fs::write(&path, "x\n").unwrap();
        wait_for("the first refusal", || r.status().failures == 1);
        fs::write(&path, "y\n").unwrap();
        wait_for("the second refusal", || r.status().failures == 2);
        let errors = logs()
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("bad-edits"))
            .count();
        assert_eq!(errors, 2, "{}", logs());
        assert_eq!(*r.current().as_ref(), vec![1]);

        // Unreadable for a while, then back with the same bad content: the status says why
        // that content is refused, not the read error.
        let parse_error = r.status().last_error.unwrap();
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        wait_for("the read error", || {
            r.status()
                .last_error
                .is_some_and(|e| e.starts_with("unable to read"))
        });
        fs::remove_dir(&path).unwrap();
        fs::write(&path, "y\n").unwrap();
        wait_for("the parse error again", || {
            r.status().last_error.as_deref() == Some(parse_error.as_str())
        });
        assert_eq!(*r.current().as_ref(), vec![1]);
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces `path` by a new file (written beside it, then renamed over it): the watcher
    /// can never read it half written. Tests that count reloads or check a value between
    /// two contents use it; an in-place write (`fs::write`: truncate, then write) may be read
    /// empty in between on a slow machine.
    fn replace(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    fn opts() -> ReloadOptions {
        ReloadOptions::default()
            .debounce(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(200))
    }

    #[test]
    fn initial_load_must_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let err = Reloading::watch(&path, numbers, opts()).unwrap_err();
        assert!(err.to_string().starts_with("unable to read"), "{err}");
        fs::write(&path, "1\nx\n").unwrap();
        let err = Reloading::watch(&path, numbers, opts()).unwrap_err();
        assert!(err.to_string().ends_with("/n:2: not a number"), "{err}");
    }

    #[test]
    fn in_place_rewrite_rename_and_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        assert_eq!(*r.current().as_ref(), vec![1]);

        // In place: only the final value is certain (the file may be read while empty).
        fs::write(&path, "1\n2\n").unwrap();
        wait_for("in-place rewrite", || *r.current().as_ref() == vec![1, 2]);
        let reloads = r.status().reloads;
        assert!(reloads >= 1);

        replace(&path, "3\n");
        wait_for("rename", || *r.current().as_ref() == vec![3]);
        assert_eq!(r.status().reloads, reloads + 1);

        replace(&path, "4\noops\n");
        wait_for("refusal", || r.status().failures == 1);
        assert_eq!(
            *r.current().as_ref(),
            vec![3],
            "a bad file never replaces a good one"
        );
        let err = r.status().last_error.unwrap();
        assert!(err.ends_with("/n:2: not a number"), "{err}");

        replace(&path, "5\n");
        wait_for("recovery", || *r.current().as_ref() == vec![5]);
        assert_eq!(r.status().last_error, None);
        assert_eq!(
            r.status().reloads,
            reloads + 2,
            "the refusal is not a reload"
        );
    }

    #[cfg(unix)]
    #[test]
    fn configmap_symlink_swap() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("..v1")).unwrap();
        fs::write(d.join("..v1/n"), "1\n").unwrap();
        symlink("..v1", d.join("..data")).unwrap();
        symlink("..data/n", d.join("n")).unwrap();
        let r = Reloading::watch(d.join("n"), numbers, opts()).unwrap();
        assert_eq!(*r.current().as_ref(), vec![1]);

        // What the kubelet does: write a new timestamped dir, then atomically swap ..data.
        fs::create_dir(d.join("..v2")).unwrap();
        fs::write(d.join("..v2/n"), "2\n").unwrap();
        symlink("..v2", d.join("..data_tmp")).unwrap();
        fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        fs::remove_dir_all(d.join("..v1")).unwrap();
        wait_for("symlink swap", || *r.current().as_ref() == vec![2]);
    }

    /// A write to the file a symlink leads to, in another directory, is an event (the re-stat
    /// is an hour away here), also once the symlink leads elsewhere.
    #[cfg(unix)]
    #[test]
    fn a_write_through_a_symlink_to_another_directory_is_seen() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["a", "b", "links"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        fs::write(d.join("a/real"), "1\n").unwrap();
        fs::write(d.join("b/other"), "5\n").unwrap();
        symlink("../a/real", d.join("links/n")).unwrap();
        let options = opts().poll_interval(Duration::from_secs(3600));
        let r = Reloading::watch(d.join("links/n"), numbers, options).unwrap();
        fs::write(d.join("a/real"), "1\n2\n").unwrap();
        wait_for("a write in the target's directory", || {
            *r.current().as_ref() == vec![1, 2]
        });
        // The symlink now leads to b/other (replaced by rename, an event of its own directory).
        symlink("../b/other", d.join("links/n.tmp")).unwrap();
        fs::rename(d.join("links/n.tmp"), d.join("links/n")).unwrap();
        wait_for("the new target", || *r.current().as_ref() == vec![5]);
        fs::write(d.join("b/other"), "6\n").unwrap();
        wait_for("a write in the new target's directory", || {
            *r.current().as_ref() == vec![6]
        });
        // The target's directory is replaced by another of the same name: watched anew (the
        // re-stat comes before the rename is seen; the write after it is an event).
        fs::create_dir(d.join("b.new")).unwrap();
        fs::write(d.join("b.new/other"), "7\n").unwrap();
        fs::rename(d.join("b"), d.join("b.old")).unwrap();
        fs::rename(d.join("b.new"), d.join("b")).unwrap();
        wait_for("the new directory's file", || {
            *r.current().as_ref() == vec![7]
        });
        fs::write(d.join("b/other"), "8\n").unwrap();
        wait_for("a write in the replaced directory", || {
            *r.current().as_ref() == vec![8]
        });
    }

    /// Every content a [`recording`] parser parsed.
    type Seen = Arc<Mutex<Vec<Result<Vec<u32>, String>>>>;

    /// `numbers`, and every content it parsed.
    fn recording() -> (impl Parse<Output = Vec<u32>>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let parser = move |path: &Path, bytes: &[u8]| {
            let parsed = numbers(path, bytes);
            let entry = match &parsed {
                Ok(n) => Ok(n.clone()),
                Err(e) => Err(e.to_string()),
            };
            record.lock().unwrap().push(entry);
            parsed
        };
        (parser, seen)
    }

    /// A file written in place by a writer that pauses half way, with a first half that parses
    /// (whole lines), is read once the writer closes it: the half is never in force (Linux,
    /// where the watcher sees the close). Also through a symlink to a file of the same
    /// directory, whose events are about the target's name.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_file_written_in_place_is_read_once_its_writer_closes_it() {
        use std::io::Write;
        for through_symlink in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let real = dir.path().join("real");
            fs::write(&real, "1\n").unwrap();
            let path = if through_symlink {
                let link = dir.path().join("n");
                std::os::unix::fs::symlink("real", &link).unwrap();
                link
            } else {
                real.clone()
            };
            let (parser, seen) = recording();
            let r = Reloading::watch(&path, parser, opts()).unwrap();
            let mut writer = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&real)
                .unwrap();
            writer.write_all(b"1\n2\n").unwrap();
            // Longer than the debounce (20 ms) and the re-stat (200 ms), shorter than the
            // 2 s a writer may pause.
            std::thread::sleep(Duration::from_millis(600));
            writer.write_all(b"3\n").unwrap();
            drop(writer);
            wait_for("the whole file", || *r.current().as_ref() == vec![1, 2, 3]);
            let seen = seen.lock().unwrap().clone();
            assert_eq!(
                seen,
                [Ok(vec![1]), Ok(vec![1, 2, 3])],
                "through a symlink: {through_symlink}"
            );
        }
    }

    /// A writer that keeps the file open and stops writing is taken to be done after the
    /// settle time: its file is read while still open.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_writer_that_keeps_the_file_open_is_not_waited_for_ever() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        fs::write(&path, "1\n").unwrap();
        let options = opts().write_settle(Duration::from_millis(300));
        let r = Reloading::watch(&path, numbers, options).unwrap();
        let mut writer = fs::OpenOptions::new().append(true).open(&path).unwrap();
        writer.write_all(b"2\n").unwrap();
        // Read while still open, well before the 30 s after which it would be read anyway.
        let start = Instant::now();
        while *r.current().as_ref() != vec![1, 2] {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "not read while open"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(writer);
    }

    /// A change of the same size that keeps the mtime (`touch -r`, `cp -p`) and comes with no
    /// event (written through a hard link in another directory) is found by the re-stat: the
    /// status change time is part of what it compares.
    #[cfg(unix)]
    #[test]
    fn a_rewrite_that_keeps_size_and_mtime_is_found_by_the_re_stat() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["watched", "elsewhere"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let path = dir.path().join("watched/n");
        let other = dir.path().join("elsewhere/n");
        fs::write(&path, "1\n").unwrap();
        fs::hard_link(&path, &other).unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        // Kernels before 6.13 take the status change time from a clock of a few milliseconds:
        // the rewrite must not fall in the tick of the link.
        std::thread::sleep(Duration::from_millis(20));
        let file = fs::OpenOptions::new().write(true).open(&other).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"2\n", 0).unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        wait_for("the rewrite", || *r.current().as_ref() == vec![2]);
    }

    /// The file's directory removed and made again: the watch went with it (and the new
    /// directory may have the old one's inode number); the directory is watched anew, so
    /// the new file and later changes are events (the re-stat is an hour away here). With
    /// an absolute path and a relative one (notify names directories absolutely).
    #[test]
    fn a_directory_made_anew_is_watched_again() {
        logs();
        let dir = tempfile::tempdir().unwrap();
        // The same directory seen from here through `..`: relative.
        let cwd = std::env::current_dir().unwrap();
        let mut relative = PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push(dir.path().strip_prefix("/").unwrap());
        for (base, name) in [
            (dir.path().to_owned(), "made-anew"),
            (relative, "made-anew-relative"),
        ] {
            let d = base.join(name);
            fs::create_dir(&d).unwrap();
            let path = d.join("n");
            fs::write(&path, "1\n").unwrap();
            let options = opts().poll_interval(Duration::from_secs(3600));
            let r = Reloading::watch(&path, numbers, options).unwrap();
            fs::remove_dir_all(&d).unwrap();
            fs::create_dir(&d).unwrap();
            fs::write(&path, "2\n").unwrap();
            wait_for("the new file", || *r.current().as_ref() == vec![2]);
            fs::write(&path, "3\n").unwrap();
            wait_for("a change in the new directory", || {
                *r.current().as_ref() == vec![3]
            });
            let again = format!("dir={}", d.display());
            assert!(
                logs()
                    .lines()
                    .any(|l| l.contains("watching the directory again") && l.ends_with(&again)),
                "{}",
                logs()
            );
        }
    }

    #[test]
    fn a_file_replaced_during_the_first_load_is_loaded() {
        use std::sync::mpsc::sync_channel;
        /// Parses like `numbers`; the first call waits until the test has replaced the file.
        struct Gated(Mutex<Option<(mpsc::SyncSender<()>, mpsc::Receiver<()>)>>);
        impl Parse for Gated {
            type Output = Vec<u32>;
            type Error = Bad;
            fn parse(&self, path: &Path, bytes: &[u8]) -> Result<Vec<u32>, Bad> {
                if let Some((started, go)) = self.0.lock().unwrap().take() {
                    started.send(()).unwrap();
                    go.recv().unwrap();
                }
                numbers(path, bytes)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        fs::write(&path, "1\n").unwrap();
        let (started_tx, started) = sync_channel(0);
        let (go, go_rx) = sync_channel(0);
        let gate = Gated(Mutex::new(Some((started_tx, go_rx))));
        let replacer = {
            let dir = dir.path().to_owned();
            let path = path.clone();
            std::thread::spawn(move || {
                started.recv().unwrap();
                // The old content is being parsed: replace the file by rename, then let it go.
                let tmp = dir.join(".n.tmp");
                fs::write(&tmp, "2\n").unwrap();
                fs::rename(&tmp, &path).unwrap();
                go.send(()).unwrap();
            })
        };
        let r = Reloading::watch(&path, gate, opts()).unwrap();
        replacer.join().unwrap();
        assert_eq!(*r.current().as_ref(), vec![1]);
        wait_for("the file replaced during the first load", || {
            *r.current().as_ref() == vec![2]
        });
    }

    #[test]
    fn the_watcher_stops_with_the_last_clone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        let value = Arc::clone(&r.value);
        drop(r);
        wait_for("thread exit", || Arc::strong_count(&value) == 1);
    }

    #[test]
    fn files_of_several_pieces_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        // Not a multiple of the piece, with every byte value.
        let blob: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i * 31 % 251) as u8).collect();
        fs::write(&path, &blob).unwrap();
        assert_eq!(&*read_paced(&path).unwrap(), blob.as_slice());
        fs::write(&path, b"").unwrap();
        assert!(read_paced(&path).unwrap().is_empty());
        assert!(read_paced(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_content_hash_covers_every_piece() {
        let a: Vec<u8> = vec![b'x'; 2 * PIECE + 7];
        let mut b = a.clone();
        assert_eq!(hash(&a), hash(&b));
        // A change in the last piece only, and a change of length only.
        *b.last_mut().unwrap() = b'y';
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&a[..a.len() - 1]));
    }

    #[test]
    fn wipe_str_zeroes_every_byte_across_pieces_and_characters() {
        // Units of one-, two- and three-byte characters: piece boundaries fall inside one.
        let mut text = "aé€".repeat(PIECE / 2);
        let len = text.len();
        assert!(len > 2 * PIECE && !PIECE.is_multiple_of(6));
        wipe_str(&mut text);
        assert_eq!(text.len(), len);
        assert!(text.bytes().all(|b| b == 0));
        let mut empty = String::new();
        wipe_str(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn a_change_in_the_last_piece_of_a_large_file_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let mut body = "1\n".repeat(PIECE); // two pieces of numbers
        fs::write(&path, &body).unwrap();
        let r = Reloading::watch(&path, numbers, opts()).unwrap();
        assert_eq!(r.current().len(), PIECE);
        body.replace_range(body.len() - 2.., "2\n");
        replace(&path, &body);
        wait_for("the last number", || r.current().last() == Some(&2));
        assert_eq!(r.current().len(), PIECE);
        assert_eq!(r.status().reloads, 1);
    }

    #[test]
    fn the_status_and_the_value_change_together() {
        /// A value that takes long to free, as a large table does.
        struct SlowDrop(u32);
        impl Drop for SlowDrop {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        fn first(path: &Path, bytes: &[u8]) -> Result<SlowDrop, Bad> {
            Ok(SlowDrop(
                numbers(path, bytes)?.first().copied().unwrap_or(0),
            ))
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        fs::write(&path, "1\n").unwrap();
        let r = Reloading::watch(&path, first, opts()).unwrap();
        // Whoever sees the new value sees the reload counted, although the old value is still
        // being freed.
        replace(&path, "2\n");
        wait_for("the new value", || r.current().0 == 2);
        assert_eq!(r.status().reloads, 1);
        // Whoever sees the reload counted sees the new value.
        replace(&path, "3\n");
        wait_for("the reload counted", || r.status().reloads == 2);
        assert_eq!(r.current().0, 3);
    }
}
