//! The parsed content of a token or password file, shared by both.
//!
//! Both files have the columns `secret,user,uid[,groups[,ignored...]]`. A table keeps the first
//! four fields of every row in one string and, per row, an entry of 16 bytes in an index keyed
//! by a randomly seeded hash of the key column (the token, or the user name; see
//! [`crate::index`]). A lookup hashes the key once and compares the candidates in constant
//! time.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::BuildHasher;

/// A hash with a random per-table seed (foldhash, hashbrown's default). The table's keys come
/// from the operator's file, never from clients, so a fast keyed hash is enough: a client can
/// only choose what it looks up, which neither grows probe chains nor reveals stored keys.
type RandomState = hashbrown::DefaultHashBuilder;
use std::path::Path;

use kube_authn_core::UserInfo;
use subtle::ConstantTimeEq;

use crate::index::{GROUPS, Index, KEPT, Row};
use crate::reader::{CsvError, Reader, Record};

/// Which file a table is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--token-auth-file`: keyed by the token; rows with an empty token are skipped.
    Token,
    /// `--basic-auth-file`: keyed by the user name.
    Password,
}

impl Kind {
    /// The column the table is keyed by.
    fn key(self) -> usize {
        match self {
            Kind::Token => SECRET,
            Kind::Password => USER,
        }
    }

    /// What the first column holds (and what kind of file it is), for messages.
    fn secret_name(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Password => "password",
        }
    }

    fn file_name(self) -> &'static str {
        self.secret_name()
    }
}

const SECRET: usize = 0;
const USER: usize = 1;
const UID: usize = 2;
/// The most rows a table reserves room for before reading them (32 MiB of index entries).
const PRESIZE_LIMIT: usize = 1 << 20;

/// Why a file was refused; the caller adds the path.
#[derive(Debug)]
pub(crate) enum RowError {
    Csv(CsvError),
    TooFewColumns { line: usize, found: usize },
    InvalidUtf8 { line: usize, column: usize },
    TooLarge,
}

/// The rows of a file.
pub(crate) struct Table {
    /// Every kept field, secrets included: wiped when the table is dropped (after a reload).
    text: String,
    rows: Index,
    hasher: RandomState,
    key: usize,
}

/// Wipes the secrets, a piece at a time: a replaced table is dropped on the reload thread,
/// which lets the request threads go first between pieces.
impl Drop for Table {
    fn drop(&mut self) {
        kube_authn_core::reload::wipe_str(&mut self.text);
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

/// Field `column` of `row` in `text`.
fn field<'t>(text: &'t str, row: &Row, column: usize) -> &'t str {
    text.get(row.span(column)).unwrap_or_default()
}

/// Field `column` of `row` in the text being parsed.
fn field_bytes<'t>(text: &'t [u8], row: &Row, column: usize) -> &'t [u8] {
    text.get(row.span(column)).unwrap_or_default()
}

fn offset(len: usize) -> Result<u32, RowError> {
    u32::try_from(len).map_err(|_| RowError::TooLarge)
}

/// Rows parsed but not yet in the index: inserted [`BATCH`] at a time, after their entries were
/// all loaded at once (see [`Index::warm`]).
struct Pending {
    hash: u64,
    row: Row,
    line: usize,
    record_number: usize,
}

/// How many rows are inserted together. A large file's index is larger than the CPU's caches,
/// and each row's entry is somewhere else in it: loaded one by one, each insert waits for
/// memory; loaded together, the misses overlap.
const BATCH: usize = 16;

fn insert_batch(
    rows: &mut Index,
    pending: &mut Vec<Pending>,
    text: &[u8],
    key: usize,
    hasher: &RandomState,
    path: &Path,
    kind: Kind,
) -> Result<(), RowError> {
    rows.warm(pending.iter().map(|p| p.hash));
    for Pending {
        hash,
        row,
        line,
        record_number,
    } in pending.drain(..)
    {
        let k = field_bytes(text, &row, key);
        let replaced = rows.insert(
            hash,
            row,
            |r| field_bytes(text, r, key) == k,
            |r| hasher.hash_one(field_bytes(text, r, key)),
        )?;
        if replaced.is_some() {
            match kind {
                Kind::Token => tracing::warn!(
                    path = %path.display(),
                    line,
                    "duplicate token has been found in token file '{}', record number '{record_number}'",
                    path.display(),
                ),
                Kind::Password => tracing::warn!(
                    path = %path.display(),
                    line,
                    "duplicate username '{}' has been found in password file '{}', record number '{record_number}'",
                    String::from_utf8_lossy(k),
                    path.display(),
                ),
            }
            // The last row wins (it replaced the earlier one, whose text stays unused).
        }
    }
    Ok(())
}

/// Appends the kept fields of `record` to `text` and returns where they are. A field that is not
/// UTF-8 (looked at only when the file is not all ASCII) refuses the file.
fn append_fields(record: &Record<'_>, text: &mut Vec<u8>, ascii: bool) -> Result<Row, RowError> {
    let mut row = Row {
        start: offset(text.len())?,
        ends: [0; KEPT],
        has_groups: record.len() > GROUPS,
    };
    for (column, end) in row.ends.iter_mut().enumerate() {
        if column < record.len() {
            let value = record.get(column);
            if !ascii && std::str::from_utf8(value).is_err() {
                return Err(RowError::InvalidUtf8 {
                    line: record.line,
                    column: column + 1,
                });
            }
            text.extend_from_slice(value);
        }
        *end = offset(text.len())?;
    }
    Ok(row)
}

impl Table {
    /// Parses a file as Kubernetes' `NewCSV` does; `path` is for the warnings.
    pub(crate) fn parse(path: &Path, bytes: &[u8], kind: Kind) -> Result<Self, RowError> {
        let key = kind.key();
        let hasher = RandomState::default();
        // One row a line at most: sized once, the table never rehashes while it fills.
        // (Blank lines and quoted line breaks make it an overestimate: capped, beyond which the
        // table grows as usual.) Both whole-file passes go a piece at a time, like the parse
        // (see `cooperate`): a reload under load never holds the request threads for long.
        let (mut lines, mut ascii) = (1, true);
        for piece in bytes.chunks(64 * 1024) {
            lines += memchr::memchr_iter(b'\n', piece).count();
            ascii &= piece.is_ascii();
            kube_authn_core::reload::cooperate();
        }
        if bytes.starts_with(b"\xef\xbb\xbf") {
            // Go's csv keeps it: the first secret starts with it, as in Kubernetes. Said, since
            // that secret then never matches what clients send.
            tracing::warn!(
                path = %path.display(),
                "the file starts with a UTF-8 byte order mark: it is part of the first {}, as in Kubernetes",
                kind.secret_name(),
            );
        }
        let mut rows = Index::with_capacity(lines.min(PRESIZE_LIMIT))?;
        // The kept fields are never longer than the file. Bytes while parsing (wiped if the
        // file is refused), checked as UTF-8 field by field only when the file is not ASCII.
        let mut text = zeroize::Zeroizing::new(Vec::with_capacity(bytes.len()));
        let mut reader = Reader::new(bytes);
        let mut record_number = 0;
        let mut pending = Vec::with_capacity(BATCH);
        let parsed = loop {
            let record = match reader.read_record() {
                Ok(Some(record)) => record,
                Ok(None) => break Ok(()),
                Err(e) => break Err(RowError::Csv(e)),
            };
            if record_number % 32 == 0 {
                kube_authn_core::reload::cooperate();
            }
            let line = record.line;
            if record.len() < 3 {
                break Err(RowError::TooFewColumns {
                    line,
                    found: record.len(),
                });
            }
            record_number += 1;
            let empty_token = kind == Kind::Token && record.get(SECRET).is_empty();
            let empty_user = record.get(USER).is_empty();
            if empty_token || empty_user {
                // Warnings come in line order: the rows before are inserted (and their
                // duplicates said) first.
                if let Err(e) =
                    insert_batch(&mut rows, &mut pending, &text, key, &hasher, path, kind)
                {
                    break Err(e);
                }
            }
            if empty_token {
                tracing::warn!(
                    path = %path.display(),
                    line,
                    "empty token has been found in token file '{}', record number '{record_number}'",
                    path.display(),
                );
                continue;
            }
            if empty_user {
                // Accepted, as in Kubernetes: its user has an empty name.
                tracing::warn!(
                    path = %path.display(),
                    line,
                    "empty user name in {} file '{}', record number '{record_number}'",
                    kind.file_name(),
                    path.display(),
                );
            }
            let row = match append_fields(&record, &mut text, ascii) {
                Ok(row) => row,
                Err(e) => break Err(e),
            };
            pending.push(Pending {
                hash: hasher.hash_one(field_bytes(&text, &row, key)),
                row,
                line,
                record_number,
            });
            if pending.len() == BATCH
                && let Err(e) =
                    insert_batch(&mut rows, &mut pending, &text, key, &hasher, path, kind)
            {
                break Err(e);
            }
        };
        // The rows before a refused one are inserted, and their duplicates said, before the
        // refusal, as Kubernetes reads the file a row at a time.
        let inserted = insert_batch(&mut rows, &mut pending, &text, key, &hasher, path, kind);
        parsed?;
        inserted?;
        // Every kept field is UTF-8 (checked above, or the whole file is ASCII).
        let text = match String::from_utf8(std::mem::take(&mut *text)) {
            Ok(text) => text,
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut e.into_bytes());
                return Err(RowError::InvalidUtf8 { line: 0, column: 0 });
            }
        };
        Ok(Self {
            text,
            rows,
            hasher,
            key,
        })
    }

    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The row whose key column is `key`. The candidates the hash selects are compared in
    /// constant time; the seed of the hash is random, so which candidates those are tells
    /// nothing about the stored keys.
    fn find(&self, key: &str) -> Option<Row> {
        let hash = self.hasher.hash_one(key.as_bytes());
        self.rows.find(hash, |r| {
            constant_time_eq(field(&self.text, r, self.key).as_bytes(), key.as_bytes())
        })
    }

    /// The user of the row whose token is `token`.
    pub(crate) fn user_by_token(&self, token: &str) -> Option<UserInfo> {
        debug_assert_eq!(self.key, SECRET);
        self.find(token).map(|row| self.user(&row))
    }

    /// The user named `username`, if `password` is theirs (compared in constant time).
    pub(crate) fn user_by_password(&self, username: &str, password: &str) -> Option<UserInfo> {
        debug_assert_eq!(self.key, USER);
        let row = self.find(username)?;
        constant_time_eq(
            field(&self.text, &row, SECRET).as_bytes(),
            password.as_bytes(),
        )
        .then(|| self.user(&row))
    }

    /// The `UserInfo` of a row, with room for one more group (`system:authenticated`, added to
    /// every authenticated user) so that adding it does not reallocate.
    fn user(&self, row: &Row) -> UserInfo {
        let groups = if row.has_groups {
            // Go's `strings.Split(record[3], ",")`: an empty column is one empty group. Plain
            // byte loops: a groups column is short, and `str::split` or memchr cost more in
            // set-up than they save there.
            let column = field(&self.text, row, GROUPS);
            let commas = column.bytes().filter(|&b| b == b',').count();
            let mut groups = Vec::with_capacity(commas + 2);
            let mut start = 0;
            for (i, b) in column.bytes().enumerate() {
                if b == b',' {
                    groups.push(column.get(start..i).unwrap_or_default().to_owned());
                    start = i + 1;
                }
            }
            groups.push(column.get(start..).unwrap_or_default().to_owned());
            groups
        } else {
            Vec::with_capacity(1)
        };
        UserInfo {
            username: field(&self.text, row, USER).to_owned(),
            uid: field(&self.text, row, UID).to_owned(),
            groups,
            extra: BTreeMap::new(),
        }
    }
}

/// Whether `a == b`, in a time that depends on the lengths only (a length mismatch returns at
/// once, as `subtle` does: lengths are not secret here).
///
/// Eight bytes a step with `subtle`'s constant-time word comparison (its optimisation barrier
/// on every word): byte-wise `subtle` costs about ten instructions a byte on the request path.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut equal = subtle::Choice::from(1);
    for (x, y) in a_words.iter().zip(b_words) {
        equal &= u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y));
    }
    equal &= a_rest.ct_eq(b_rest);
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_every_byte() {
        assert!(constant_time_eq(b"", b""));
        for len in 1..40usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            assert!(constant_time_eq(&a, &a.clone()), "len {len}");
            for i in 0..len {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!constant_time_eq(&a, &b), "len {len}, byte {i}");
            }
            assert!(!constant_time_eq(&a, &a[..len - 1]));
        }
    }

    #[test]
    fn non_ascii_files_keep_utf8_fields_and_ignore_bytes_after_the_fourth_column() {
        let t = Table::parse(
            Path::new("t"),
            "tök,jörg,1,\"grüppe,b\",\u{fffd}\n".as_bytes(),
            Kind::Token,
        )
        .unwrap();
        let user = t.user_by_token("tök").unwrap();
        assert_eq!(
            (user.username.as_str(), user.groups.as_slice()),
            ("jörg", &["grüppe".to_owned(), "b".to_owned()][..])
        );
        let t = Table::parse(Path::new("t"), b"t\xc3\xb6k,u,1,g,\xff\n", Kind::Token).unwrap();
        assert_eq!(t.user_by_token("tök").unwrap().username, "u");
        let Err(RowError::InvalidUtf8 { line, column }) =
            Table::parse(Path::new("t"), b"a,u,1\nb,\xc3\xb6,1,\xff\n", Kind::Token)
        else {
            panic!("a non-UTF-8 group column must be refused");
        };
        assert_eq!((line, column), (2, 4));
    }

    #[test]
    fn groups_have_room_for_system_authenticated() {
        let t = Table::parse(Path::new("t"), b"t,u,i,\"a,b\"\nt2,u,i\n", Kind::Token).unwrap();
        let user = t.user_by_token("t").unwrap();
        assert_eq!(user.groups, ["a", "b"]);
        assert!(user.groups.capacity() > user.groups.len());
        assert!(t.user_by_token("t2").unwrap().groups.capacity() >= 1);
    }

    #[test]
    fn duplicate_rows_keep_the_last_and_the_table_still_finds_every_key() {
        let mut csv = String::new();
        for i in 0..2000 {
            csv.push_str(&format!("tok{i},user{i},uid{i}\n"));
        }
        csv.push_str("tok7,again,x\n");
        let t = Table::parse(Path::new("t"), csv.as_bytes(), Kind::Token).unwrap();
        assert_eq!(t.len(), 2000);
        for i in (0..2000).filter(|&i| i != 7) {
            assert_eq!(
                t.user_by_token(&format!("tok{i}")).unwrap().username,
                format!("user{i}")
            );
        }
        assert_eq!(t.user_by_token("tok7").unwrap().username, "again");
        assert_eq!(t.user_by_token("tok2000"), None);
    }

    #[test]
    fn rows_with_fields_too_long_for_an_index_entry_are_found_whole() {
        let (uid, groups) = ("u".repeat(70_000), "g".repeat(65_534));
        let key = "k".repeat(65_535);
        let csv = format!("{key},alice,{uid},{groups}\nt2,bob,{uid},\"{groups},x\"\nt3,carol,1,\n");
        let t = Table::parse(Path::new("t"), csv.as_bytes(), Kind::Token).unwrap();
        let alice = t.user_by_token(&key).unwrap();
        assert_eq!((alice.username.as_str(), &alice.uid), ("alice", &uid));
        assert_eq!(alice.groups, std::slice::from_ref(&groups));
        let bob = t.user_by_token("t2").unwrap();
        assert_eq!(bob.groups, [groups, "x".to_owned()]);
        assert_eq!(t.user_by_token("t3").unwrap().groups, [""]);
        assert_eq!(t.user_by_token(&key[1..]), None);
    }

    proptest::proptest! {
        // Any mix of rows (repeated keys, empty tokens, with or without a groups column) gives
        // the table a model map gives: the last row of each key, and nothing for other keys.
        #[test]
        fn lookups_agree_with_a_map_of_the_last_rows(rows in proptest::collection::vec((
            proptest::sample::select(vec!["", "a", "b", "c", "dd", "é", "token-1", "token-2"]),
            0..1000u32,
            proptest::option::of(proptest::sample::select(vec!["", "g", "g,h", ",", "x,,y"])),
        ), 0..60)) {
            let mut csv = String::new();
            let mut model = std::collections::HashMap::new();
            for (key, n, groups) in &rows {
                csv.push_str(&format!("{key},user-{n},uid-{n}"));
                if let Some(g) = groups {
                    csv.push_str(&format!(",\"{g}\""));
                }
                csv.push('\n');
                if !key.is_empty() {
                    let groups: Vec<String> =
                        groups.map(|g| g.split(',').map(str::to_owned).collect()).unwrap_or_default();
                    model.insert(*key, (format!("user-{n}"), format!("uid-{n}"), groups));
                }
            }
            let t = Table::parse(Path::new("t"), csv.as_bytes(), Kind::Token).unwrap();
            proptest::prop_assert_eq!(t.len(), model.len());
            for key in ["", "a", "b", "c", "dd", "é", "token-1", "token-2", "token-3", "aa"] {
                let found = t.user_by_token(key).map(|u| (u.username, u.uid, u.groups));
                proptest::prop_assert_eq!(found, model.get(key).cloned(), "key {:?}", key);
            }
        }
    }

    #[test]
    fn debug_shows_no_content() {
        let t = Table::parse(Path::new("t"), b"s3cret,alice,1\n", Kind::Token).unwrap();
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("alice"),
            "{debug}"
        );
    }
}
