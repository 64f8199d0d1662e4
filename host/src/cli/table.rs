//! Plain, aligned text tables for the human output of `trellis ctl`: a header row, columns
//! separated by two spaces, no borders (like `kubectl get`).

/// Renders `rows` under `headers`, each column as wide as its widest cell.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            let pad = width - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `a=1, b=2` for a map, `-` when it is empty.
pub fn pairs<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    list(entries.into_iter().map(|(k, v)| format!("{k}={v}")))
}

/// The items joined by `, `, `-` when there are none.
pub fn list(items: impl IntoIterator<Item = impl Into<String>>) -> String {
    let items: Vec<String> = items.into_iter().map(Into::into).collect();
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string()],
            vec!["longer".to_string(), "-".to_string()],
        ];
        assert_eq!(
            render(&["ID", "VALUE"], &rows),
            "ID      VALUE\na       long value\nlonger  -\n"
        );
    }
}
