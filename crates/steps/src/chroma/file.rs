//! The export file's lines (see the module docs of `chroma`), written and read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::StepError;

/// `to` + ".partial": where an export writes until it is complete.
pub(super) fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

// Written from borrowed data: an export never copies a page to serialize it.
#[derive(Serialize)]
pub(super) struct HeaderOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: &'a str,
    pub id: &'a str,
    pub metadata: &'a Option<Map<String, Value>>,
    pub configuration: &'a Option<Value>,
    pub count: u64,
    pub dimension: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct RecordOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub collection: &'a str,
    pub id: &'a str,
    pub embedding: &'a [f32],
    pub metadata: Option<&'a Map<String, Value>>,
    pub document: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct EndOut {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub collections: usize,
    pub records: u64,
}

/// One line as read back. Unknown keys are ignored so that newer files stay readable.
#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Line {
    Collection(Header),
    Record(Record),
    End(End),
}

#[derive(Deserialize, Debug, Clone)]
pub(super) struct Header {
    pub name: String,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub configuration: Option<Value>,
    pub count: u64,
    #[serde(default)]
    pub dimension: Option<u64>,
}

#[derive(Deserialize, Debug)]
pub(super) struct Record {
    pub collection: String,
    pub id: String,
    pub embedding: Vec<f32>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub document: Option<String>,
}

#[derive(Deserialize, Debug)]
pub(super) struct End {
    pub collections: u64,
    pub records: u64,
}

/// Reads an export file line by line, numbering lines for error messages.
pub(super) struct Reader {
    path: PathBuf,
    inner: BufReader<tokio::fs::File>,
    buf: Vec<u8>,
    line: u64,
}

impl Reader {
    pub async fn open(path: &Path) -> Result<Self, StepError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StepError::setup(format!("cannot read {}: {e}", path.display())))?;
        Ok(Reader {
            path: path.to_owned(),
            inner: BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
            line: 0,
        })
    }

    /// The next non-blank line and its number, or None at the end of the file.
    pub async fn next(&mut self) -> Result<Option<(u64, Line)>, StepError> {
        loop {
            self.buf.clear();
            let read = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .await
                .map_err(|e| {
                    StepError::failed(format!("cannot read {}: {e}", self.path.display()), None)
                })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let complete = self.buf.ends_with(b"\n");
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return match serde_json::from_slice::<Line>(&self.buf) {
                Ok(line) => Ok(Some((self.line, line))),
                // Every line an export writes ends with a newline: one without is a cut file.
                Err(e) if !complete => Err(self.error(format!(
                    "the last line is cut off ({e}): the file is truncated"
                ))),
                Err(e) => Err(self.error(format!("not an export line: {e}"))),
            };
        }
    }

    pub fn error(&self, message: impl std::fmt::Display) -> StepError {
        StepError::failed(
            format!("{} line {}: {message}", self.path.display(), self.line),
            None,
        )
    }
}
