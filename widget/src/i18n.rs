//! The widget's strings: English built into the wasm (`en.json`, parsed once by the browser's
//! `JSON.parse`: no table or search code in the wasm); the other languages are small JSON
//! catalogs (`widget/i18n/<lang>.json`, served content-hashed with the widget's files) the loader
//! fetches only when that language is chosen. The view looks each key up in the visitor's
//! catalog first, then in English: a key missing from a catalog shows in English.
//!
//! Values hold named placeholders (`{name}`, `{pos}`, `{len}`, `{n}`, `{why}`, `{email}`,
//! `{date}`) filled in by the view, so every language orders its words itself. `_dir` is the
//! text direction (`rtl` for Arabic).

/// The English catalog: a JSON object of texts by key.
pub const EN: &str = include_str!("en.json");

/// The English text of `key` (native: the view model's tests).
#[cfg(test)]
pub fn en(key: &str) -> String {
    let cat: serde_json::Map<String, serde_json::Value> = serde_json::from_str(EN).unwrap();
    cat.get(key).and_then(|v| v.as_str()).unwrap_or(key).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders (`{...}`) in `s`, sorted.
    fn holes(s: &str) -> Vec<&str> {
        let mut h: Vec<&str> =
            s.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n)).collect();
        h.sort_unstable();
        h
    }

    fn english() -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(EN).unwrap()
    }

    #[test]
    fn english_is_a_flat_catalog() {
        let en_cat = english();
        assert!(en_cat.values().all(serde_json::Value::is_string));
        assert_eq!(en("human"), "Talk to a human");
        assert_eq!(en("no_such_key"), "no_such_key");
        // Every key the window's markup and the view use is in it.
        for part in include_str!("dom.rs").split('@').skip(1) {
            let key: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(key.is_empty() || en_cat.contains_key(&key), "@{key} not in en.json");
        }
        for src in [include_str!("ui.rs"), include_str!("model.rs")] {
            for part in src.split(".t(\"").chain(src.split(".tf(\"").skip(1)).skip(1) {
                if let Some((key, _)) = part.split_once('"') {
                    assert!(en_cat.contains_key(key), "t(\"{key}\") not in en.json");
                }
            }
        }
    }

    /// Every catalog is a flat object of strings, of known keys only, with the same placeholders
    /// as the English text; the right-to-left ones say so.
    #[test]
    fn catalogs_match_english() {
        let en_cat = english();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("i18n");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let lang = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let cat: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            for (k, v) in &cat {
                let v = v.as_str().unwrap_or_else(|| panic!("{lang}: {k} is not a string"));
                assert!(en_cat.contains_key(k), "{lang}: unknown key {k}");
                assert_eq!(holes(v), holes(&en(k)), "{lang}: {k} placeholders");
                assert!(!v.trim().is_empty(), "{lang}: {k} is empty");
            }
            let dir = cat.get("_dir").and_then(|d| d.as_str()).unwrap_or("ltr");
            assert_eq!(dir, if lang == "ar" { "rtl" } else { "ltr" }, "{lang}: _dir");
            // Complete: a missing key would show in English (allowed, but not in what we ship).
            for k in en_cat.keys() {
                assert!(cat.contains_key(k), "{lang}: {k} missing");
            }
            seen.push(lang);
        }
        seen.sort();
        assert_eq!(seen, ["ar", "de", "es", "fr", "pt"]);
    }
}
