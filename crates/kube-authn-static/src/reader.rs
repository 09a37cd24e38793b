//! CSV exactly as Kubernetes reads its static files: Go's `encoding/csv` with
//! `FieldsPerRecord = -1` and every other option at its default.
//!
//! That is RFC 4180 plus Go's own rules: `\r\n` is read as `\n` everywhere (also inside quoted
//! fields) and a `\r` just before the end of the input is dropped, but a lone `\r` elsewhere is
//! data; empty lines are skipped (a line of spaces is not empty); there is no comment character
//! and nothing is trimmed; a field is quoted only when its first byte is `"`; a `"` anywhere
//! else in an unquoted field, a closing quote followed by anything but `,` or the end of the
//! line, and a quoted field left open at the end of the input are errors. A UTF-8 byte order
//! mark is data.
//!
//! The `csv` crate reads the same files more leniently (it accepts stray quotes, strips a byte
//! order mark, ends records at a lone `\r` and keeps `\r\n` inside quoted fields), so this is a
//! line-for-line port of Go's `Reader.readRecord`; the tests compare it with Go's own test table
//! and, on the inputs where the two agree by design, with the `csv` crate.

use std::fmt;

/// A CSV syntax error, as Go's `encoding/csv` reports it (`csv.ParseError`).
///
/// Lines and columns are 1-based; columns count bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvError {
    record_line: usize,
    line: usize,
    column: usize,
    kind: CsvErrorKind,
}

/// What was wrong with the CSV syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsvErrorKind {
    /// A `"` inside a field that does not start with one (Go `csv.ErrBareQuote`).
    BareQuote,
    /// A closing `"` followed by something other than `,` or the end of the line, or a quoted
    /// field still open at the end of the input (Go `csv.ErrQuote`).
    Quote,
}

impl CsvError {
    /// The line the error is on.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column (byte) the error is at.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The line the record containing the error starts on (earlier than [`line`](Self::line)
    /// when a quoted field spans lines).
    pub fn record_line(&self) -> usize {
        self.record_line
    }

    /// What was wrong.
    pub fn kind(&self) -> CsvErrorKind {
        self.kind
    }
}

impl fmt::Display for CsvErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsvErrorKind::BareQuote => "bare \" in non-quoted-field",
            CsvErrorKind::Quote => "extraneous or missing \" in quoted-field",
        })
    }
}

/// Go's `ParseError.Error()` text.
impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.record_line != self.line {
            write!(f, "record on line {}; ", self.record_line)?;
        }
        write!(
            f,
            "parse error on line {}, column {}: {}",
            self.line, self.column, self.kind
        )
    }
}

impl std::error::Error for CsvError {}

/// Reads records one at a time from CSV held in memory.
pub(crate) struct Reader<'a> {
    /// What is left to read.
    rest: &'a [u8],
    /// Lines read so far (Go `numLine`).
    lines: usize,
    /// The unescaped fields of the current record, one after another (Go `recordBuffer`).
    fields: Vec<u8>,
    /// Where each field of the current record ends in `fields` (Go `fieldIndexes`).
    ends: Vec<usize>,
}

/// One record: its fields and the line it starts on.
pub(crate) struct Record<'r> {
    /// The line the record starts on (1-based).
    pub(crate) line: usize,
    fields: &'r [u8],
    ends: &'r [usize],
}

impl Record<'_> {
    /// The number of fields.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` (0-based); empty when there is no such field.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.fields.get(start..end).unwrap_or_default()
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self {
            rest: input,
            lines: 0,
            fields: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The next physical line as Go's `readLine` returns it: its text without the line ending
    /// (`\n`, `\r\n`, or a `\r` just before the end of the input) and whether a `\n` ended it.
    /// `None` at the end of the input.
    fn read_line(&mut self) -> Option<(&'a [u8], bool)> {
        if self.rest.is_empty() {
            return None;
        }
        self.lines += 1;
        let (mut text, newline) = match memchr::memchr(b'\n', self.rest) {
            Some(i) => {
                let text = &self.rest[..i];
                self.rest = &self.rest[i + 1..];
                (text, true)
            }
            None => (std::mem::take(&mut self.rest), false),
        };
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        Some((text, newline))
    }

    /// The next record, `None` at the end of the input (Go `readRecord`).
    pub(crate) fn read_record(&mut self) -> Result<Option<Record<'_>>, CsvError> {
        // Skip empty lines.
        let (mut line, mut newline) = loop {
            match self.read_line() {
                None => return Ok(None),
                Some(([], _)) => {}
                Some(line) => break line,
            }
        };

        let record_line = self.lines;
        self.fields.clear();
        self.ends.clear();
        // Go's `pos`: where the parser is, for error positions.
        let mut pos_line = self.lines;
        let mut col = 1;
        let error = |line, column, kind| CsvError {
            record_line,
            line,
            column,
            kind,
        };
        'fields: loop {
            if line.first() != Some(&b'"') {
                // Unquoted field: up to the next comma or the end of the line; a quote before
                // the comma is a bare quote (one scan for both).
                let comma = match memchr::memchr2(b',', b'"', line) {
                    Some(j) if line[j] == b'"' => {
                        return Err(error(self.lines, col + j, CsvErrorKind::BareQuote));
                    }
                    found => found,
                };
                let field = &line[..comma.unwrap_or(line.len())];
                self.fields.extend_from_slice(field);
                self.ends.push(self.fields.len());
                match comma {
                    Some(i) => {
                        line = &line[i + 1..];
                        col += i + 1;
                    }
                    None => break 'fields,
                }
            } else {
                // Quoted field: up to a closing quote followed by a comma or the end of the line.
                line = &line[1..];
                col += 1;
                loop {
                    if let Some(i) = memchr::memchr(b'"', line) {
                        self.fields.extend_from_slice(&line[..i]);
                        line = &line[i + 1..];
                        col += i + 1;
                        match line.first() {
                            // `""`: an escaped quote.
                            Some(b'"') => {
                                self.fields.push(b'"');
                                line = &line[1..];
                                col += 1;
                            }
                            // `",`: the end of the field.
                            Some(b',') => {
                                line = &line[1..];
                                col += 1;
                                self.ends.push(self.fields.len());
                                continue 'fields;
                            }
                            // `"` at the end of the line: the end of the record.
                            None => {
                                self.ends.push(self.fields.len());
                                break 'fields;
                            }
                            Some(_) => return Err(error(self.lines, col - 1, CsvErrorKind::Quote)),
                        }
                    } else if !line.is_empty() || newline {
                        // The field goes on on the next line.
                        self.fields.extend_from_slice(line);
                        if newline {
                            self.fields.push(b'\n');
                        }
                        col += line.len() + usize::from(newline);
                        (line, newline) = self.read_line().unwrap_or_default();
                        if !line.is_empty() || newline {
                            pos_line += 1;
                            col = 1;
                        }
                    } else {
                        // The input ended inside the quotes.
                        return Err(error(pos_line, col, CsvErrorKind::Quote));
                    }
                }
            }
        }
        Ok(Some(Record {
            line: record_line,
            fields: &self.fields,
            ends: &self.ends,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record's line and fields.
    type Records = Vec<(usize, Vec<Vec<u8>>)>;

    /// All records, or the first error.
    fn read_all(input: &[u8]) -> Result<Records, CsvError> {
        let mut reader = Reader::new(input);
        let mut out = Vec::new();
        while let Some(r) = reader.read_record()? {
            out.push((r.line, (0..r.len()).map(|i| r.get(i).to_vec()).collect()));
        }
        Ok(out)
    }

    /// Go's `makePositions`: `§` marks the start of a field, `¶` the start of a record, `∑` the
    /// position of an error; returns the start line of each record, the error position per
    /// record and the input without the markers.
    #[allow(clippy::type_complexity)]
    fn make_positions(text: &str) -> (Vec<usize>, Vec<Option<(usize, usize)>>, String) {
        let (mut line, mut col) = (1, 1);
        let mut record_lines: Vec<Option<usize>> = vec![None];
        let mut errors = vec![None];
        let mut input = String::new();
        for c in text.chars() {
            match c {
                '\n' => {
                    line += 1;
                    col = 1;
                    input.push(c);
                }
                '§' => {
                    let first = record_lines.last_mut().unwrap();
                    first.get_or_insert(line);
                }
                '¶' => {
                    record_lines.push(None);
                    errors.push(None);
                }
                '∑' => *errors.last_mut().unwrap() = Some((line, col)),
                _ => {
                    input.push(c);
                    col += c.len_utf8();
                }
            }
        }
        (
            record_lines
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
            errors,
            input,
        )
    }

    // Go's encoding/csv reader_test.go `readTests`: every case that runs with the options
    // Kubernetes uses (default comma, no comment, no lazy quotes, no trimming), names kept.
    #[test]
    fn go_read_tests() {
        use CsvErrorKind::{BareQuote, Quote};
        type Case = (
            &'static str,
            &'static str,
            Result<&'static [&'static [&'static str]], CsvErrorKind>,
        );
        let cases: &[Case] = &[
            ("Simple", "§a,§b,§c\n", Ok(&[&["a", "b", "c"]])),
            (
                "CRLF",
                "§a,§b\r\n¶§c,§d\r\n",
                Ok(&[&["a", "b"], &["c", "d"]]),
            ),
            ("BareCR", "§a,§b\rc,§d\r\n", Ok(&[&["a", "b\rc", "d"]])),
            (
                "RFC4180test",
                "§#field1,§field2,§field3\n¶§\"aaa\",§\"bb\nb\",§\"ccc\"\n¶§\"a,a\",§\"b\"\"bb\",§\"ccc\"\n¶§zzz,§yyy,§xxx\n",
                Ok(&[
                    &["#field1", "field2", "field3"],
                    &["aaa", "bb\nb", "ccc"],
                    &["a,a", "b\"bb", "ccc"],
                    &["zzz", "yyy", "xxx"],
                ]),
            ),
            ("NoEOLTest", "§a,§b,§c", Ok(&[&["a", "b", "c"]])),
            (
                "MultiLine",
                "§\"two\nline\",§\"one line\",§\"three\nline\nfield\"",
                Ok(&[&["two\nline", "one line", "three\nline\nfield"]]),
            ),
            (
                "BlankLine",
                "§a,§b,§c\n\n¶§d,§e,§f\n\n",
                Ok(&[&["a", "b", "c"], &["d", "e", "f"]]),
            ),
            (
                "LeadingSpace",
                "§ a,§  b,§   c\n",
                Ok(&[&[" a", "  b", "   c"]]),
            ),
            (
                "NoComment",
                "§#1,§2,§3\n¶§a,§b,§c",
                Ok(&[&["#1", "2", "3"], &["a", "b", "c"]]),
            ),
            ("BadDoubleQuotes", "§a∑\"\"b,c", Err(BareQuote)),
            ("BadBareQuote", "§a ∑\"word\",\"b\"", Err(BareQuote)),
            ("BadTrailingQuote", "§\"a word\",b∑\"", Err(BareQuote)),
            ("ExtraneousQuote", "§\"a ∑\"word\",\"b\"", Err(Quote)),
            (
                "FieldCount",
                "§a,§b,§c\n¶§d,§e",
                Ok(&[&["a", "b", "c"], &["d", "e"]]),
            ),
            (
                "TrailingCommaEOF",
                "§a,§b,§c,§",
                Ok(&[&["a", "b", "c", ""]]),
            ),
            (
                "TrailingCommaEOL",
                "§a,§b,§c,§\n",
                Ok(&[&["a", "b", "c", ""]]),
            ),
            (
                "NotTrailingComma3",
                "§a,§b,§c,§ \n",
                Ok(&[&["a", "b", "c", " "]]),
            ),
            (
                "CommaFieldTest",
                "§x,§y,§z,§w\n¶§x,§y,§z,§\n¶§x,§y,§,§\n¶§x,§,§,§\n¶§,§,§,§\n¶§\"x\",§\"y\",§\"z\",§\"w\"\n¶§\"x\",§\"y\",§\"z\",§\"\"\n¶§\"x\",§\"y\",§\"\",§\"\"\n¶§\"x\",§\"\",§\"\",§\"\"\n¶§\"\",§\"\",§\"\",§\"\"\n",
                Ok(&[
                    &["x", "y", "z", "w"],
                    &["x", "y", "z", ""],
                    &["x", "y", "", ""],
                    &["x", "", "", ""],
                    &["", "", "", ""],
                    &["x", "y", "z", "w"],
                    &["x", "y", "z", ""],
                    &["x", "y", "", ""],
                    &["x", "", "", ""],
                    &["", "", "", ""],
                ]),
            ),
            (
                "ReadAllReuseRecord",
                "§a,§b\n¶§c,§d",
                Ok(&[&["a", "b"], &["c", "d"]]),
            ),
            ("StartLine1", "§a,\"b\nc∑\"d,e", Err(Quote)),
            ("StartLine2", "§a,§b\n¶§\"d\n\n,e∑", Err(Quote)),
            (
                "CRLFInQuotedField",
                "§A,§\"Hello\r\nHi\",§B\r\n",
                Ok(&[&["A", "Hello\nHi", "B"]]),
            ),
            (
                "TrailingCR",
                "§field1,§field2\r",
                Ok(&[&["field1", "field2"]]),
            ),
            ("QuotedTrailingCR", "§\"field\"\r", Ok(&[&["field"]])),
            ("QuotedTrailingCRCR", "§\"field∑\"\r\r", Err(Quote)),
            ("FieldCR", "§field\rfield\r", Ok(&[&["field\rfield"]])),
            (
                "FieldCRCR",
                "§field\r\rfield\r\r",
                Ok(&[&["field\r\rfield\r"]]),
            ),
            (
                "FieldCRCRLF",
                "§field\r\r\n¶§field\r\r\n",
                Ok(&[&["field\r"], &["field\r"]]),
            ),
            (
                "FieldCRCRLFCR",
                "§field\r\r\n¶§\rfield\r\r\n\r",
                Ok(&[&["field\r"], &["\rfield\r"]]),
            ),
            (
                "FieldCRCRLFCRCR",
                "§field\r\r\n¶§\r\rfield\r\r\n¶§\r\r",
                Ok(&[&["field\r"], &["\r\rfield\r"], &["\r"]]),
            ),
            (
                "MultiFieldCRCRLFCRCR",
                "§field1,§field2\r\r\n¶§\r\rfield1,§field2\r\r\n¶§\r\r,§",
                Ok(&[
                    &["field1", "field2\r"],
                    &["\r\rfield1", "field2\r"],
                    &["\r\r", ""],
                ]),
            ),
            (
                "QuotedFieldMultipleLF",
                "§\"\n\n\n\n\"",
                Ok(&[&["\n\n\n\n"]]),
            ),
            ("MultipleCRLF", "\r\n\r\n\r\n\r\n", Ok(&[])),
            ("QuoteWithTrailingCRLF", "§\"foo∑\"bar\"\r\n", Err(Quote)),
            (
                "DoubleQuoteWithTrailingCRLF",
                "§\"foo\"\"bar\"\r\n",
                Ok(&[&["foo\"bar"]]),
            ),
            ("EvenQuotes", "§\"\"\"\"\"\"\"\"", Ok(&[&["\"\"\""]])),
            ("OddQuotes", "§\"\"\"\"\"\"\"∑", Err(Quote)),
        ];
        for (name, text, want) in cases {
            let (record_lines, errors, input) = make_positions(text);
            let got = read_all(input.as_bytes());
            match want {
                Ok(records) => {
                    let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let fields: Vec<Vec<&str>> = got
                        .iter()
                        .map(|(_, r)| r.iter().map(|f| std::str::from_utf8(f).unwrap()).collect())
                        .collect();
                    assert_eq!(fields, *records, "{name}");
                    let lines: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
                    assert_eq!(lines, record_lines[..got.len()], "{name}: record lines");
                }
                Err(kind) => {
                    let (record, (line, column)) = errors
                        .iter()
                        .enumerate()
                        .find_map(|(i, e)| e.map(|e| (i, e)))
                        .unwrap();
                    let want = CsvError {
                        record_line: record_lines[record],
                        line,
                        column,
                        kind: *kind,
                    };
                    assert_eq!(got.unwrap_err(), want, "{name}");
                }
            }
        }
    }

    // Go reader_test.go BinaryBlobField: fields are bytes, not text.
    #[test]
    fn binary_blob_field() {
        let got = read_all(b"x09\x41\xb4\x1c,aktau").unwrap();
        assert_eq!(
            got,
            vec![(1, vec![b"x09A\xb4\x1c".to_vec(), b"aktau".to_vec()])]
        );
    }

    #[test]
    fn error_text_is_go_s() {
        let e = read_all(b"a,b\"c\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "parse error on line 1, column 4: bare \" in non-quoted-field"
        );
        let e = read_all(b"x\n\"a\nb\"c\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "record on line 2; parse error on line 3, column 2: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            (e.record_line(), e.line(), e.column(), e.kind()),
            (2, 3, 2, CsvErrorKind::Quote)
        );
        let e = read_all(b"\"abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "parse error on line 1, column 5: extraneous or missing \" in quoted-field"
        );
    }

    #[test]
    fn byte_order_mark_is_data() {
        let got = read_all("\u{feff}a,b,c\n".as_bytes()).unwrap();
        assert_eq!(got[0].1[0], "\u{feff}a".as_bytes());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = read_all(&bytes);
        }

        // Where Go's rules and the csv crate's agree by design (no `\r`, input Go accepts), the
        // two readers give the same records.
        #[test]
        fn agrees_with_the_csv_crate(parts in proptest::collection::vec(
            proptest::sample::select(vec!["a", "bc", " ", ",", "\"", "\"\"", "\n", "\n\n", "é"]), 0..24)
        ) {
            let input = parts.concat();
            if let Ok(ours) = read_all(input.as_bytes()) {
                let mut theirs = Vec::new();
                let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input.as_bytes());
                for record in r.byte_records() {
                    theirs.push(record.unwrap().iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
                }
                let ours: Vec<_> = ours.into_iter().map(|(_, r)| r).collect();
                proptest::prop_assert_eq!(ours, theirs, "{:?}", input);
            }
        }
    }
}
