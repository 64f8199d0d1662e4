//! Plain, aligned text tables for the human output of `trellis ctl` (and `trellis app`): a
//! header row, columns separated by two spaces, no borders (like `kubectl get`).

/// Renders `rows` under `headers`, each column as wide as its widest cell (the renderer
/// `trellis app` uses too).
pub use trellis_deployer::cli::render_table as render;

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
