//! A RESULT Rows body, decoded without copying: its metadata and its rows of cells. The
//! rewriter reads results through it, and tests and the fuzz target read what it wrote.

use super::metadata::{metadata, Column, Columns, Metadata, NO_METADATA};
use crate::codec::primitives::{bytes, int, run, PResult};
use crate::codec::CodecError;

/// RESULT kind Rows.
pub(crate) const KIND_ROWS: i32 = 2;

/// A RESULT body of kind Rows (prefixes stripped; starts at the [int] kind), validated to its
/// last byte when parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rows<'a> {
    /// The metadata as parsed (its `columns` moved to `columns`).
    pub(crate) meta: Metadata<'a>,
    columns: Vec<Column<'a>>,
    rows_count: usize,
    /// The rows' cells, as on the wire.
    rows_raw: &'a [u8],
}

/// One row: its cells as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    raw: &'a [u8],
    count: usize,
}

/// One cell of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell<'a> {
    /// The cell as on the wire: its [int] length, then its bytes.
    pub raw: &'a [u8],
    /// Its value; `None` is null.
    pub value: Option<&'a [u8]>,
}

fn cell(i: &[u8]) -> PResult<'_, Cell<'_>> {
    let (rest, value) = bytes(i)?;
    let raw = i
        .get(..i.len().saturating_sub(rest.len()))
        .unwrap_or_default();
    Ok((rest, Cell { raw, value }))
}

impl<'a> Rows<'a> {
    /// Decodes a Rows body of protocol `version` (3..=5). `prepared`: the columns of the PREPARE
    /// that the EXECUTE ran, needed when the result says No_metadata; they must be as many as
    /// the result's column count. Every byte must be accounted for.
    pub fn parse(
        body: &'a [u8],
        version: u8,
        prepared: Option<&'a Columns>,
    ) -> Result<Rows<'a>, CodecError> {
        if !(3..=5).contains(&version) {
            return Err(CodecError::UnsupportedVersion { version });
        }
        let (rest, kind) = run("RESULT", body, int)?;
        if kind != KIND_ROWS {
            return Err(CodecError::Malformed("RESULT: not Rows"));
        }
        let (rest, mut meta) = run("RESULT Rows metadata", rest, |i| metadata(i, version))?;
        let columns = match (meta.columns.take(), prepared) {
            (Some(c), _) => c,
            (None, Some(p)) if usize::try_from(meta.columns_count) == Ok(p.len()) => {
                p.iter().collect()
            }
            (None, Some(_)) => {
                return Err(CodecError::Malformed(
                    "RESULT Rows: column count differs from the prepared metadata",
                ))
            }
            (None, None) => {
                return Err(CodecError::Malformed(
                    "RESULT Rows: No_metadata and no prepared metadata",
                ))
            }
        };
        let (rows_raw, count) = run("RESULT Rows", rest, int)?;
        let rows_count =
            usize::try_from(count).map_err(|_| CodecError::Malformed("RESULT Rows: rows count"))?;
        if columns.is_empty() && rows_count > 0 {
            return Err(CodecError::Malformed("RESULT Rows: rows without columns"));
        }
        // Validate every cell once; the iterators below then cannot fail.
        let mut rest = rows_raw;
        for _ in 0..rows_count {
            for _ in 0..columns.len() {
                rest = run("RESULT Rows cell", rest, cell)?.0;
            }
        }
        if !rest.is_empty() {
            return Err(CodecError::Malformed(
                "RESULT Rows: bytes after the last row",
            ));
        }
        Ok(Rows {
            meta,
            columns,
            rows_count,
            rows_raw,
        })
    }

    /// The result's columns (from its metadata, or from the prepared metadata).
    pub fn columns(&self) -> &[Column<'a>] {
        &self.columns
    }

    /// The metadata flags as they came.
    pub fn flags(&self) -> i32 {
        self.meta.flags
    }

    /// Whether the metadata carried column specs (No_metadata not set).
    pub fn has_metadata(&self) -> bool {
        self.meta.flags & NO_METADATA == 0
    }

    /// When Has_more_pages: the paging state (`None`: null).
    pub fn paging_state(&self) -> Option<Option<&'a [u8]>> {
        self.meta.paging_state
    }

    /// v5, when Metadata_changed: the new result metadata id.
    pub fn new_metadata_id(&self) -> Option<&'a [u8]> {
        self.meta.new_metadata_id
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows_count
    }

    pub fn is_empty(&self) -> bool {
        self.rows_count == 0
    }

    /// The rows, in order.
    pub fn rows(&self) -> impl Iterator<Item = Row<'a>> + 'a {
        let mut rest = self.rows_raw;
        let count = self.columns.len();
        (0..self.rows_count).map_while(move |_| {
            let start = rest;
            for _ in 0..count {
                rest = cell(rest).ok()?.0;
            }
            let raw = start.get(..start.len().saturating_sub(rest.len()))?;
            Some(Row { raw, count })
        })
    }

    /// The index of the column `name`, if the result has it.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

impl<'a> Row<'a> {
    /// The row's cells, one per column.
    pub fn cells(&self) -> impl Iterator<Item = Cell<'a>> + 'a {
        let mut rest = self.raw;
        (0..self.count).map_while(move |_| {
            let (r, c) = cell(rest).ok()?;
            rest = r;
            Some(c)
        })
    }

    /// The row as on the wire (its cells).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The cell of column `index`.
    pub fn cell(&self, index: usize) -> Option<Cell<'a>> {
        self.cells().nth(index)
    }

    /// The value of column `index`; `None` when null or out of range.
    pub fn value(&self, index: usize) -> Option<&'a [u8]> {
        self.cell(index).and_then(|c| c.value)
    }
}
