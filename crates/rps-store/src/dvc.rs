//! DVC's content hash of a dataset folder, so MLflow runs can be tagged with the very hash
//! `dvc.lock` records for the stage's input (`md5` of the folder listing, suffixed `.dir`).
//!
//! DVC 3 hashes a folder as the MD5 of `json.dumps(entries, sort_keys=True)`, where `entries` is
//! the list of `{"md5": <md5 of the file>, "relpath": <posix path>}` sorted by path. The test
//! suite checks this against `dvc.lock` after a real `dvc repro`.

use crate::object::{ObjectStore, StoreError};
use md5::{Digest, Md5};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON string escaping as Python's `json.dumps` does it (`ensure_ascii=True`).
fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// DVC's hash of a folder given its files as `(relative posix path, MD5 hex)` pairs.
pub fn dir_md5_of(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<String> = sorted
        .iter()
        .map(|(path, md5)| {
            format!(
                "{{\"md5\": {}, \"relpath\": {}}}",
                py_json_str(md5),
                py_json_str(path)
            )
        })
        .collect();
    let listing = format!("[{}]", entries.join(", "));
    format!("{}.dir", hex(&Md5::digest(listing.as_bytes())))
}

/// DVC's hash of everything in `store` (a dataset folder). Only meaningful for local folders,
/// which is what DVC tracks; remote stores return `None`.
pub fn dir_md5(store: &dyn ObjectStore) -> Result<Option<String>, StoreError> {
    dir_md5_with(store, &std::collections::HashMap::new())
}

/// The MD5 hex of `bytes`, as DVC records a file.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// [`dir_md5`] given the MD5s already computed for some keys (from bytes read anyway, with
/// [`md5_hex`]): only the other files are read.
pub fn dir_md5_with(
    store: &dyn ObjectStore,
    known: &std::collections::HashMap<String, String>,
) -> Result<Option<String>, StoreError> {
    if store.local_path("x").is_none() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for key in store.list("")? {
        let md5 = match known.get(&key) {
            Some(m) => m.clone(),
            None => md5_hex(&store.get(&key)?),
        };
        files.push((key, md5));
    }
    Ok(Some(dir_md5_of(&files)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dvc_for_a_known_listing() {
        // Computed with DVC 3.67's Tree.digest() for two files "a" (b"1") and "d/b" (b"2").
        let files = vec![
            ("d/b".to_owned(), hex(&Md5::digest(b"2"))),
            ("a".to_owned(), hex(&Md5::digest(b"1"))),
        ];
        assert_eq!(dir_md5_of(&files), "40226b25cd4f2c77875248ff0888f0d9.dir");
    }

    #[test]
    fn escapes_like_python() {
        assert_eq!(py_json_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(py_json_str("é"), "\"\\u00e9\"");
    }
}
