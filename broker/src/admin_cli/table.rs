//! Left-aligned text tables, and the same rows as JSON objects keyed by column.

use std::fmt;

use serde_json::{Map, Value};

pub struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// A one-line answer instead of rows.
    message: Option<String>,
}

impl Table {
    pub fn new<const N: usize>(columns: [&str; N]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            message: None,
        }
    }

    pub fn message(text: String) -> Table {
        Table {
            columns: Vec::new(),
            rows: Vec::new(),
            message: Some(text),
        }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.columns.len());
        self.rows.push(cells.into());
    }

    pub fn to_json(&self) -> Value {
        let rows = self
            .rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(column, cell)| (column.replace(' ', "_"), Value::String(cell.clone())))
                    .collect();
                Value::Object(object)
            })
            .collect();
        Value::Array(rows)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(message) = &self.message {
            return writeln!(f, "{message}");
        }
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                self.rows
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain([column.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            writeln!(f, "{}", text.join("  ").trim_end())
        };
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        line(f, &header)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_json_keys_are_column_names() {
        let mut table = Table::new(["topic", "queue id"]);
        table.row(["T".into(), "0".into()]);
        table.row(["Longer".into(), "12".into()]);
        assert_eq!(
            table.to_string(),
            "TOPIC   QUEUE ID\nT       0\nLonger  12\n"
        );
        assert_eq!(table.to_json()[1]["queue_id"], "12");
    }
}
