//! The hash index of a table: where each row's fields are in the table's text, found by the
//! hash of the row's key.
//!
//! A lookup with a key nobody looked up recently costs cache misses, and on a large file they
//! are most of its time (about 200 ns each on the machine of the README's figures, against
//! about 20 ns for the whole lookup of a row in cache). A Swiss table, as hashbrown's, takes
//! three dependent ones: its control bytes, then the slot, then the text. Here an entry holds a
//! tag of the hash and the field lengths, 16 bytes, four to a cache line, in one array at most
//! half full (linear probing): the entry, then the text, two misses.

use std::ops::Range;

use crate::table::RowError;

/// The columns kept: the secret, the user name, the uid and the groups. The fifth and later
/// are ignored, as in Kubernetes.
pub(crate) const KEPT: usize = 4;
/// The groups column.
pub(crate) const GROUPS: usize = 3;

/// One row: the end of each kept field in the table's text (the fields are stored one after the
/// other from `start`), and whether the row has a fourth column (an empty one is one empty
/// group, as Go's `strings.Split` gives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) start: u32,
    pub(crate) ends: [u32; KEPT],
    pub(crate) has_groups: bool,
}

impl Row {
    /// Where field `column` of the row is in the text.
    pub(crate) fn span(&self, column: usize) -> Range<usize> {
        let start = match column {
            0 => self.start,
            _ => self.ends.get(column - 1).copied().unwrap_or(self.start),
        };
        let end = self.ends.get(column).copied().unwrap_or(start);
        start as usize..end as usize
    }
}

/// An entry of the index: 0 in `tag` is an empty entry. A row whose fields all fit in `lens`
/// (shorter than 65,535 bytes; the groups length is stored plus one, 0 meaning no fourth
/// column) is held here whole; any other has `lens == LONG` and `start` indexes
/// [`Index::long`].
#[derive(Clone, Copy, Default)]
struct Entry {
    tag: u32,
    start: u32,
    lens: [u16; KEPT],
}

const LONG: [u16; KEPT] = [u16::MAX; KEPT];

/// The tag of a hash: its high half (its low bits choose the entry), never 0.
fn tag(hash: u64) -> u32 {
    ((hash >> 32) as u32).max(1)
}

/// Open addressing with linear probing, never more than half full: a probe sequence is short
/// and always ends at an empty entry.
pub(crate) struct Index {
    entries: Vec<Entry>,
    long: Vec<Row>,
    len: usize,
}

impl Index {
    /// An index with room for `rows` rows before it grows.
    pub(crate) fn with_capacity(rows: usize) -> Result<Self, RowError> {
        let slots = rows
            .checked_mul(2)
            .and_then(|n| n.max(16).checked_next_power_of_two())
            .ok_or(RowError::TooLarge)?;
        Ok(Self {
            entries: empty_entries(slots)?,
            long: Vec::new(),
            len: 0,
        })
    }

    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Loads the first entry each of `hashes` would probe, all before any is used, so that
    /// their cache misses overlap instead of each insert waiting for its own.
    pub(crate) fn warm(&self, hashes: impl Iterator<Item = u64>) {
        let mask = self.entries.len() - 1;
        let mut tags = 0;
        for hash in hashes {
            tags ^= self.entries.get(hash as usize & mask).map_or(0, |e| e.tag);
        }
        std::hint::black_box(tags);
    }

    /// The row whose key hashes to `hash` and satisfies `is_key` (called only for rows whose
    /// tag matches).
    pub(crate) fn find(&self, hash: u64, is_key: impl FnMut(&Row) -> bool) -> Option<Row> {
        self.position(hash, is_key).ok().map(|(_, row)| row)
    }

    /// Adds `row`, replacing the row that satisfies `is_key` if there is one (and returning it).
    /// `rehash` gives the hash of a stored row's key, for when the index grows.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        row: Row,
        is_key: impl FnMut(&Row) -> bool,
        rehash: impl Fn(&Row) -> u64,
    ) -> Result<Option<Row>, RowError> {
        if (self.len + 1).saturating_mul(2) > self.entries.len() {
            self.grow(rehash)?;
        }
        let entry = self.pack(tag(hash), &row)?;
        match self.position(hash, is_key) {
            Ok((i, old)) => {
                if let Some(e) = self.entries.get_mut(i) {
                    *e = entry;
                }
                Ok(Some(old))
            }
            Err(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    *e = entry;
                    self.len += 1;
                }
                Ok(None)
            }
        }
    }

    /// `Ok((i, row))`: the entry of the key and its row; `Err(i)`: the empty entry where it
    /// would go.
    fn position(
        &self,
        hash: u64,
        mut is_key: impl FnMut(&Row) -> bool,
    ) -> Result<(usize, Row), usize> {
        let mask = self.entries.len() - 1;
        let tag = tag(hash);
        let mut i = hash as usize & mask;
        // At most half full: the probe meets an empty entry before it has gone round.
        for _ in 0..self.entries.len() {
            let Some(e) = self.entries.get(i) else { break };
            if e.tag == 0 {
                return Err(i);
            }
            if e.tag == tag {
                let row = self.unpack(e);
                if is_key(&row) {
                    return Ok((i, row));
                }
            }
            i = (i + 1) & mask;
        }
        Err(i)
    }

    /// Twice the entries, every row moved to its place in them.
    fn grow(&mut self, rehash: impl Fn(&Row) -> u64) -> Result<(), RowError> {
        let slots = self
            .entries
            .len()
            .checked_mul(2)
            .ok_or(RowError::TooLarge)?;
        let old = std::mem::replace(&mut self.entries, empty_entries(slots)?);
        for e in old.into_iter().filter(|e| e.tag != 0) {
            // Every key is new to the grown index: it goes to the first empty entry.
            let Err(i) = self.position(rehash(&self.unpack(&e)), |_| false) else {
                continue;
            };
            if let Some(slot) = self.entries.get_mut(i) {
                *slot = e;
            }
        }
        Ok(())
    }

    fn pack(&mut self, tag: u32, row: &Row) -> Result<Entry, RowError> {
        let mut lens = [0; KEPT];
        let mut start = row.start;
        let mut fits = true;
        for (column, (len, &end)) in lens.iter_mut().zip(&row.ends).enumerate() {
            let mut n = end.saturating_sub(start);
            start = end;
            if column == GROUPS {
                n = if row.has_groups {
                    n.saturating_add(1)
                } else {
                    0
                };
            }
            match u16::try_from(n) {
                Ok(n) if n < u16::MAX => *len = n,
                _ => fits = false,
            }
        }
        if fits {
            return Ok(Entry {
                tag,
                start: row.start,
                lens,
            });
        }
        let start = u32::try_from(self.long.len()).map_err(|_| RowError::TooLarge)?;
        self.long.push(*row);
        Ok(Entry {
            tag,
            start,
            lens: LONG,
        })
    }

    fn unpack(&self, e: &Entry) -> Row {
        if e.lens == LONG {
            return self.long.get(e.start as usize).copied().unwrap_or_default();
        }
        let mut row = Row {
            start: e.start,
            ends: [0; KEPT],
            has_groups: e.lens[GROUPS] > 0,
        };
        let mut end = e.start;
        for (column, (&len, slot)) in e.lens.iter().zip(&mut row.ends).enumerate() {
            let len = if column == GROUPS {
                len.saturating_sub(1)
            } else {
                len
            };
            end = end.saturating_add(u32::from(len));
            *slot = end;
        }
        row
    }
}

/// `slots` empty entries; a count that does not fit in memory is an error, not an abort (as for
/// the file's bytes).
fn empty_entries(slots: usize) -> Result<Vec<Entry>, RowError> {
    let mut entries = Vec::new();
    entries
        .try_reserve_exact(slots)
        .map_err(|_| RowError::TooLarge)?;
    entries.resize(slots, Entry::default());
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: u32, lens: [u32; KEPT], has_groups: bool) -> Row {
        let mut ends = [0; KEPT];
        let mut end = start;
        for (slot, len) in ends.iter_mut().zip(lens) {
            end += len;
            *slot = end;
        }
        Row {
            start,
            ends,
            has_groups,
        }
    }

    #[test]
    fn entries_are_a_quarter_of_a_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn rows_come_back_as_stored_short_long_and_at_the_length_limits() {
        let cases = [
            row(0, [0, 0, 0, 0], false),
            row(7, [3, 4, 5, 0], true),
            row(7, [3, 4, 5, 9], true),
            row(9, [1, 1, 1, 65_533], true),
            row(9, [1, 1, 1, 65_534], true),
            row(9, [1, 1, 1, 0], false),
            row(9, [65_534, 1, 1, 1], true),
            row(9, [65_535, 1, 1, 1], true),
            row(9, [1, 65_535, 1, 1], false),
            row(9, [1, 1, 70_000, 1], true),
            row(u32::MAX - 10, [1, 2, 3, 4], true),
        ];
        let mut index = Index::with_capacity(0).unwrap();
        for (n, r) in cases.iter().enumerate() {
            let hash = ((n as u64) << 40) | n as u64;
            assert_eq!(index.insert(hash, *r, |_| false, |_| 0).unwrap(), None);
            assert_eq!(index.find(hash, |_| true), Some(*r), "case {n}");
        }
        assert_eq!(index.len(), cases.len());
        assert_eq!(index.long.len(), 4);
    }

    #[test]
    fn probes_wrap_around_the_end_and_skip_rows_that_are_not_the_key() {
        let mut index = Index::with_capacity(0).unwrap();
        let last = index.entries.len() as u64 - 1;
        // Three keys with the same home (the last entry) and the same tag.
        let hash = (5 << 32) | last;
        for start in [1, 2, 3] {
            let r = row(start, [1, 1, 1, 0], false);
            let stored = index.insert(hash, r, |s| s.start == start, |_| hash);
            assert_eq!(stored.unwrap(), None);
        }
        for start in [1, 2, 3] {
            assert_eq!(index.find(hash, |r| r.start == start).unwrap().start, start);
        }
        assert_eq!(index.find(hash, |r| r.start == 4), None);
        assert_eq!(index.find((6 << 32) | last, |_| true), None, "another tag");
        // The last and the first two entries hold them.
        let used: Vec<usize> = (0..index.entries.len())
            .filter(|&i| index.entries[i].tag != 0)
            .collect();
        assert_eq!(used, [0, 1, last as usize]);
    }

    #[test]
    fn the_same_key_replaces_its_row_and_returns_the_old_one() {
        let mut index = Index::with_capacity(4).unwrap();
        let (a, b) = (row(0, [1, 1, 1, 0], false), row(10, [2, 2, 2, 2], true));
        assert_eq!(index.insert(42, a, |_| true, |_| 42).unwrap(), None);
        assert_eq!(index.insert(42, b, |_| true, |_| 42).unwrap(), Some(a));
        assert_eq!(index.len(), 1);
        assert_eq!(index.find(42, |_| true), Some(b));
    }

    #[test]
    fn the_index_grows_past_its_capacity_and_keeps_every_row() {
        // A weak hash (many equal home entries) to exercise the probes while growing.
        let hash = |start: u32| (u64::from(start % 97) * 0x9E37_79B9) | (u64::from(start) << 32);
        let mut index = Index::with_capacity(0).unwrap();
        for start in 0..5000 {
            let r = row(start, [1, 0, 0, 0], false);
            let old = index.insert(hash(start), r, |s| s.start == start, |s| hash(s.start));
            assert_eq!(old.unwrap(), None);
            assert!(index.len * 2 <= index.entries.len());
        }
        assert_eq!(index.len(), 5000);
        for start in 0..5000 {
            let found = index.find(hash(start), |r| r.start == start);
            assert_eq!(found.map(|r| r.start), Some(start));
        }
        assert_eq!(index.find(hash(5000), |r| r.start == 5000), None);
    }

    #[test]
    fn an_index_too_large_for_memory_is_an_error() {
        assert!(matches!(
            Index::with_capacity(usize::MAX / 2),
            Err(RowError::TooLarge)
        ));
        assert!(matches!(
            Index::with_capacity(usize::MAX / 64),
            Err(RowError::TooLarge)
        ));
    }
}
