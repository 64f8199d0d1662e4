//! A small reader over a parsed JSON document that records every problem with the path of the
//! field it concerns (`spec.components[2].traits[0].properties.target`) instead of stopping at
//! the first one, and never panics on an unexpected shape.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Problem;

/// Collects problems while a document is read.
#[derive(Default)]
pub struct Reader {
    pub problems: Vec<Problem>,
}

/// The JSON type name of `value`, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Which keys a map may have. wadm refuses unknown keys in some of its types
/// (`deny_unknown_fields`) and ignores them in others; a manifest it deploys must deploy here.
#[derive(Clone, Copy)]
pub enum Keys<'a> {
    /// Any key, without a word.
    Any,
    /// Only these; another is an error (where wadm refuses it too).
    Only(&'a [&'a str]),
    /// These are read; another is ignored with a warning (where wadm ignores it).
    Known(&'a [&'a str]),
}

/// A YAML scalar as the text wadm reads it as where it wants a string outside the components
/// (serde_yaml takes a plain scalar into a `String` as written): numbers and booleans as
/// written, an empty value as "". The document is already parsed, so `~` and `null` read as ""
/// too, where wadm keeps them as written.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

impl Reader {
    pub fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::error(path, reason));
    }

    pub fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::warning(path, reason));
    }

    /// `value` as a map whose keys are checked as `keys` says.
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        keys: Keys<'_>,
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.error(path, format!("must be a map, found {}", kind(value)));
            return None;
        };
        match keys {
            Keys::Any => {}
            Keys::Only(known) => {
                for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
                    self.error(
                        join(path, key),
                        format!("unknown field, expected one of: {}", known.join(", ")),
                    );
                }
            }
            Keys::Known(known) => {
                for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
                    self.warn(
                        join(path, key),
                        format!(
                            "unknown field, ignored (as wadm ignores it); known: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        Some(map)
    }

    /// A required key of `map`.
    pub fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none() {
            self.error(join(path, key), "is required");
        }
        value
    }

    /// `value` as a non-empty string.
    pub fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        let text = value.as_str().map(str::to_string);
        self.non_empty(text, value, path)
    }

    /// `text`, read from `value`, unless it is missing or blank.
    fn non_empty(&mut self, text: Option<String>, value: &Value, path: &str) -> Option<String> {
        match text {
            Some(text) if text.trim().is_empty() => {
                self.error(path, "must not be empty");
                None
            }
            Some(text) => Some(text),
            None => {
                self.error(path, format!("must be a string, found {}", kind(value)));
                None
            }
        }
    }

    pub fn required_string(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<String> {
        let value = self.required(map, path, key)?;
        self.string(value, &join(path, key))
    }

    /// An optional string key; `Err(())` when present but not a usable string.
    pub fn optional_string(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Result<Option<String>, ()> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => self.string(value, &join(path, key)).map(Some).ok_or(()),
        }
    }

    /// A map of strings to strings; non-string values are rejected with a hint to quote them
    /// (wadm reads the components from a buffered document, where a YAML number is no string).
    pub fn string_map(&mut self, value: &Value, path: &str) -> BTreeMap<String, String> {
        self.map_of(value, path, |value| match value {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "must be a string, found {} (quote it, e.g. '{}')",
                kind(other),
                other
            )),
        })
    }

    /// A map of strings to scalars read as text ([`scalar_text`]), as wadm reads metadata and
    /// policies.
    pub fn text_map(&mut self, value: &Value, path: &str) -> BTreeMap<String, String> {
        self.map_of(value, path, |value| {
            scalar_text(value).ok_or_else(|| format!("must be a string, found {}", kind(value)))
        })
    }

    fn map_of(
        &mut self,
        value: &Value,
        path: &str,
        read: impl Fn(&Value) -> Result<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if value.is_null() {
            return out;
        }
        let Some(map) = self.object(value, path, Keys::Any) else {
            return out;
        };
        for (key, value) in map {
            match read(value) {
                Ok(text) => {
                    out.insert(key.clone(), text);
                }
                Err(reason) => self.error(join(path, key), reason),
            }
        }
        out
    }

    /// A required key of `map` as a non-empty scalar read as text ([`scalar_text`]).
    pub fn required_text(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<String> {
        let value = self.required(map, path, key)?;
        self.non_empty(scalar_text(value), value, &join(path, key))
    }

    /// `value` as a list (null reads as empty).
    pub fn list<'v>(&mut self, value: &'v Value, path: &str) -> &'v [Value] {
        match value {
            Value::Array(items) => items,
            Value::Null => &[],
            other => {
                self.error(path, format!("must be a list, found {}", kind(other)));
                &[]
            }
        }
    }

    /// `value` as an unsigned 32-bit integer.
    pub fn count(&mut self, value: &Value, path: &str) -> Option<u32> {
        match value.as_u64().map(u32::try_from) {
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                self.error(path, "is too large (at most 4294967295)");
                None
            }
            None => {
                self.error(
                    path,
                    format!("must be a non-negative integer, found {}", kind(value)),
                );
                None
            }
        }
    }
}
