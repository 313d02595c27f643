//! Printing results as a table, JSON, NDJSON or CSV.
//!
//! Commands build rows of JSON objects; this module renders them. Table and
//! CSV columns are the keys of the first row, in insertion order
//! (`serde_json` keeps keys sorted, so commands name columns explicitly).

use std::io::{self, Write};

use serde_json::Value;

use crate::cli::OutputFormat;
use crate::error::{CliError, CliResult};

/// A list of records with named columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Records {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

impl Records {
    /// An empty list with these columns.
    pub(crate) fn new(columns: &[&'static str]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// `rows` as records of `columns`, each column a field of the rows.
    pub(crate) fn from_rows<T: serde::Serialize>(columns: &[&'static str], rows: &[T]) -> Self {
        let mut records = Self::new(columns);
        for row in rows {
            let row = serde_json::to_value(row).unwrap_or(Value::Null);
            records.push(columns.iter().map(|c| row[*c].clone()).collect());
        }
        records
    }

    /// Adds a row; values line up with the columns.
    pub(crate) fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Row `index` as a JSON object keyed by column.
    fn object(&self, index: usize) -> Value {
        let map = self
            .columns
            .iter()
            .zip(&self.rows[index])
            .map(|(c, v)| ((*c).to_owned(), v.clone()))
            .collect();
        Value::Object(map)
    }

    /// Prints the records to stdout in `format`.
    pub(crate) fn print(&self, format: OutputFormat) -> CliResult {
        let mut out = io::stdout().lock();
        self.write(format, &mut out).map_err(CliError::from)
    }

    /// Writes the records in `format`.
    pub(crate) fn write(&self, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
        match format {
            OutputFormat::Table => self.write_table(out),
            OutputFormat::Json => {
                let all: Vec<Value> = (0..self.len()).map(|i| self.object(i)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)
            }
            OutputFormat::Ndjson => {
                for i in 0..self.len() {
                    writeln!(out, "{}", self.object(i))?;
                }
                Ok(())
            }
            OutputFormat::Csv => self.write_csv(out),
        }
    }

    fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(cell_text).collect())
            .collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        write_aligned(out, &header, &widths)?;
        for row in &cells {
            write_aligned(out, row, &widths)?;
        }
        Ok(())
    }

    fn write_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let header: Vec<String> = self.columns.iter().map(|c| csv_field(c)).collect();
        writeln!(out, "{}", header.join(","))?;
        for row in &self.rows {
            let fields: Vec<String> = row.iter().map(|v| csv_field(&cell_text(v))).collect();
            writeln!(out, "{}", fields.join(","))?;
        }
        Ok(())
    }
}

fn write_aligned(out: &mut dyn Write, cells: &[String], widths: &[usize]) -> io::Result<()> {
    let last = cells.len().saturating_sub(1);
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        line.push_str(cell);
        if i < last {
            let pad = width - cell.chars().count() + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// A value as table or CSV text: strings bare, null empty, others as JSON.
pub(crate) fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Refuses `csv` for commands that do not support it.
pub(crate) fn reject_csv(format: OutputFormat, command: &str) -> CliResult {
    if format == OutputFormat::Csv {
        return Err(CliError::Usage(format!(
            "--output csv is supported by `audit` only, not `{command}`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Records {
        let mut r = Records::new(&["seq", "subject", "data"]);
        r.push(vec![json!(1), json!("events.a.b.c"), json!({"x": "a,b"})]);
        r.push(vec![json!(10), json!("e"), Value::Null]);
        r
    }

    fn render(format: OutputFormat) -> String {
        let mut out = Vec::new();
        sample().write(format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_aligns_columns() {
        assert_eq!(
            render(OutputFormat::Table),
            "SEQ  SUBJECT       DATA\n1    events.a.b.c  {\"x\":\"a,b\"}\n10   e\n"
        );
    }

    #[test]
    fn csv_quotes_fields_with_commas_and_quotes() {
        assert_eq!(
            render(OutputFormat::Csv),
            "seq,subject,data\n1,events.a.b.c,\"{\"\"x\"\":\"\"a,b\"\"}\"\n10,e,\n"
        );
    }

    #[test]
    fn ndjson_has_one_object_per_line() {
        let text = render(OutputFormat::Ndjson);
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["subject"], "events.a.b.c");
    }
}
