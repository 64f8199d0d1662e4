//! Component values on the command line, checked against their WIT types: read from WAVE text
//! (the `wasm-wave` crate, through wasmtime) or JSON, and written back the same way.
//!
//! JSON follows the shape a person would guess: numbers, strings (a `char` is a one-character
//! string), arrays for lists and tuples, objects for records (WIT field names), `null` or the
//! value for an option, `{"ok": …}` / `{"err": …}` for a result, the case name or
//! `{"case": payload}` for a variant, the name for an enum, an array of names for flags.

use serde_json::{Map, Number, Value};
use wasmtime::component::wasm_wave;
use wasmtime::component::{Type, Val};

use crate::cli::exports::describe;

/// How arguments are written and results printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Notation {
    Wave,
    Json,
}

/// Reads one argument of type `ty`. A string parameter also takes bare text (`hello` for
/// `"hello"`), which is what a shell user types. The error says what was expected.
pub fn parse(text: &str, ty: &Type, notation: Notation) -> Result<Val, String> {
    match notation {
        Notation::Wave => match wasm_wave::from_str::<Val>(ty, text) {
            Ok(value) => Ok(value),
            Err(_) if *ty == Type::String && !text.trim_start().starts_with('"') => {
                Ok(Val::String(text.to_string()))
            }
            Err(error) => Err(format!(
                "`{text}` is not a WAVE value of type {} ({error})",
                describe(ty)
            )),
        },
        Notation::Json => {
            let value: Value = match serde_json::from_str(text) {
                Ok(value) => value,
                Err(_) if *ty == Type::String => Value::String(text.to_string()),
                Err(error) => return Err(format!("`{text}` is not JSON ({error})")),
            };
            from_json(&value, ty)
        }
    }
}

/// Writes one result.
pub fn print(value: &Val, notation: Notation) -> Result<String, String> {
    match notation {
        Notation::Wave => wasm_wave::to_string(value).map_err(|e| e.to_string()),
        Notation::Json => Ok(to_json(value).to_string()),
    }
}

fn expected(ty: &Type, got: &Value) -> String {
    format!("expected {}, got {got}", describe(ty))
}

/// A JSON value as a value of `ty`.
pub fn from_json(value: &Value, ty: &Type) -> Result<Val, String> {
    let wrong = || expected(ty, value);
    macro_rules! int {
        ($variant:ident, $int:ty) => {{
            let n = value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from))
                .ok_or_else(wrong)?;
            Val::$variant(
                <$int>::try_from(n)
                    .map_err(|_| format!("{n} is out of range for {}", describe(ty)))?,
            )
        }};
    }
    Ok(match ty {
        Type::Bool => Val::Bool(value.as_bool().ok_or_else(wrong)?),
        Type::S8 => int!(S8, i8),
        Type::U8 => int!(U8, u8),
        Type::S16 => int!(S16, i16),
        Type::U16 => int!(U16, u16),
        Type::S32 => int!(S32, i32),
        Type::U32 => int!(U32, u32),
        Type::S64 => int!(S64, i64),
        Type::U64 => int!(U64, u64),
        Type::Float32 => Val::Float32(value.as_f64().ok_or_else(wrong)? as f32),
        Type::Float64 => Val::Float64(value.as_f64().ok_or_else(wrong)?),
        Type::Char => {
            let text = value.as_str().ok_or_else(wrong)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(wrong()),
            }
        }
        Type::String => Val::String(value.as_str().ok_or_else(wrong)?.to_string()),
        Type::List(list) => {
            let element = list.ty();
            let items = value.as_array().ok_or_else(wrong)?;
            let items = items
                .iter()
                .enumerate()
                .map(|(i, item)| from_json(item, &element).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<_, _>>()?;
            Val::List(items)
        }
        Type::Record(record) => {
            let object = value.as_object().ok_or_else(wrong)?;
            if let Some(unknown) = object
                .keys()
                .find(|key| !record.fields().any(|f| f.name == key.as_str()))
            {
                return Err(format!("{} has no field `{unknown}`", describe(ty)));
            }
            let mut fields = Vec::new();
            for field in record.fields() {
                let value = object.get(field.name).unwrap_or(&Value::Null);
                if value.is_null() && !matches!(field.ty, Type::Option(_)) {
                    return Err(format!("field `{}` is missing", field.name));
                }
                let field_value = from_json(value, &field.ty)
                    .map_err(|e| format!("field `{}`: {e}", field.name))?;
                fields.push((field.name.to_string(), field_value));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let items = value.as_array().ok_or_else(wrong)?;
            if items.len() != tuple.types().len() {
                return Err(wrong());
            }
            let items = tuple
                .types()
                .zip(items)
                .enumerate()
                .map(|(i, (ty, item))| from_json(item, &ty).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<_, _>>()?;
            Val::Tuple(items)
        }
        Type::Variant(variant) => {
            let (name, payload) = case_of(value).ok_or_else(wrong)?;
            let case = variant
                .cases()
                .find(|case| case.name == name)
                .ok_or_else(|| format!("{} has no case `{name}`", describe(ty)))?;
            let payload = match (case.ty, payload) {
                (Some(ty), Some(payload)) => Some(Box::new(
                    from_json(payload, &ty).map_err(|e| format!("case `{name}`: {e}"))?,
                )),
                (None, None | Some(Value::Null)) => None,
                (Some(ty), None) => {
                    return Err(format!("case `{name}` takes a {}", describe(&ty)));
                }
                (None, Some(_)) => return Err(format!("case `{name}` takes no value")),
            };
            Val::Variant(name.to_string(), payload)
        }
        Type::Enum(enumeration) => {
            let name = value.as_str().ok_or_else(wrong)?;
            if !enumeration.names().any(|case| case == name) {
                return Err(format!("{} has no case `{name}`", describe(ty)));
            }
            Val::Enum(name.to_string())
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            value => Val::Option(Some(Box::new(from_json(value, &option.ty())?))),
        },
        Type::Result(result) => {
            let (name, payload) = case_of(value).ok_or_else(wrong)?;
            let ty = match name {
                "ok" => result.ok(),
                "err" => result.err(),
                _ => return Err(wrong()),
            };
            let payload = match (ty, payload) {
                (Some(ty), Some(payload)) => Some(Box::new(from_json(payload, &ty)?)),
                (None, None | Some(Value::Null)) => None,
                _ => return Err(wrong()),
            };
            Val::Result(if name == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Flags(flags) => {
            let names = value.as_array().ok_or_else(wrong)?;
            let mut set = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(wrong)?;
                if !flags.names().any(|flag| flag == name) {
                    return Err(format!("{} has no flag `{name}`", describe(ty)));
                }
                set.push(name.to_string());
            }
            Val::Flags(set)
        }
        ty => {
            return Err(format!(
                "{} values cannot be given on the command line",
                describe(ty)
            ));
        }
    })
}

/// `"name"` or `{"name": payload}`: a variant or result case.
fn case_of(value: &Value) -> Option<(&str, Option<&Value>)> {
    match value {
        Value::String(name) => Some((name, None)),
        Value::Object(object) if object.len() == 1 => object
            .iter()
            .next()
            .map(|(name, payload)| (name.as_str(), Some(payload))),
        _ => None,
    }
}

/// A value as JSON, the shape [`from_json`] reads.
pub fn to_json(value: &Val) -> Value {
    match value {
        Val::Bool(v) => Value::Bool(*v),
        Val::S8(v) => Value::from(*v),
        Val::U8(v) => Value::from(*v),
        Val::S16(v) => Value::from(*v),
        Val::U16(v) => Value::from(*v),
        Val::S32(v) => Value::from(*v),
        Val::U32(v) => Value::from(*v),
        Val::S64(v) => Value::from(*v),
        Val::U64(v) => Value::from(*v),
        Val::Float32(v) => float(f64::from(*v)),
        Val::Float64(v) => float(*v),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), to_json(value)))
                .collect(),
        ),
        Val::Variant(name, None) | Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, Some(payload)) => single(name, to_json(payload)),
        Val::Option(None) => Value::Null,
        Val::Option(Some(value)) => to_json(value),
        Val::Result(Ok(payload)) => single("ok", payload.as_deref().map_or(Value::Null, to_json)),
        Val::Result(Err(payload)) => single("err", payload.as_deref().map_or(Value::Null, to_json)),
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Map(entries) => Value::Array(
            entries
                .iter()
                .map(|(key, value)| Value::Array(vec![to_json(key), to_json(value)]))
                .collect(),
        ),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}

/// A number, or `"NaN"` / `"inf"` / `"-inf"`, which JSON cannot write as numbers.
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or_else(
        || {
            Value::String(match v {
                v if v.is_nan() => "NaN".into(),
                v if v > 0.0 => "inf".into(),
                _ => "-inf".into(),
            })
        },
        Value::Number,
    )
}

fn single(name: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(name.to_string(), value)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Engine;
    use wasmtime::component::Component;
    use wasmtime::component::types::ComponentItem;

    /// The types a small component exports, by name.
    fn types() -> Vec<(String, Type)> {
        let engine = Engine::default();
        let component = Component::new(
            &engine,
            r#"(component
                (type $point (record (field "x" s32) (field "label" string) (field "tag" (option u8))))
                (export "point" (type $point))
                (type $shape (variant (case "circle" float64) (case "empty")))
                (export "shape" (type $shape))
                (type $outcome (result u32 (error string)))
                (export "outcome" (type $outcome))
                (type $perms (flags "read" "write"))
                (export "perms" (type $perms))
            )"#,
        )
        .unwrap();
        component
            .component_type()
            .exports(&engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::Type(ty) => Some((name.to_string(), ty)),
                _ => None,
            })
            .collect()
    }

    fn ty(name: &str) -> Type {
        types().into_iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn wave_arguments_are_checked_against_their_type() {
        assert_eq!(parse("5", &Type::U32, Notation::Wave), Ok(Val::U32(5)));
        let error = parse("x", &Type::U32, Notation::Wave).unwrap_err();
        assert!(
            error.starts_with("`x` is not a WAVE value of type u32"),
            "{error}"
        );
        assert_eq!(
            parse("hello world", &Type::String, Notation::Wave),
            Ok(Val::String("hello world".into()))
        );
        assert_eq!(
            parse("\"quoted\"", &Type::String, Notation::Wave),
            Ok(Val::String("quoted".into()))
        );
        let point = parse(
            "{x: -1, label: \"p\", tag: some(2)}",
            &ty("point"),
            Notation::Wave,
        )
        .unwrap();
        assert_eq!(
            print(&point, Notation::Wave).unwrap(),
            "{x: -1, label: \"p\", tag: some(2)}"
        );
    }

    #[test]
    fn json_arguments_take_the_shapes_a_person_would_guess() {
        let point = from_json(&serde_json::json!({"x": 3, "label": "p"}), &ty("point")).unwrap();
        assert_eq!(
            to_json(&point),
            serde_json::json!({"x": 3, "label": "p", "tag": null})
        );
        let error = from_json(&serde_json::json!({"label": "p"}), &ty("point")).unwrap_err();
        assert_eq!(error, "field `x` is missing");
        let error = from_json(
            &serde_json::json!({"x": 1, "label": "p", "tag": 300}),
            &ty("point"),
        )
        .unwrap_err();
        assert_eq!(error, "field `tag`: 300 is out of range for u8");
        for (value, name) in [
            (serde_json::json!({"circle": 1.5}), "shape"),
            (serde_json::json!("empty"), "shape"),
            (serde_json::json!({"ok": 7}), "outcome"),
            (serde_json::json!({"err": "no"}), "outcome"),
            (serde_json::json!(["write"]), "perms"),
        ] {
            let parsed = from_json(&value, &ty(name)).unwrap();
            assert_eq!(to_json(&parsed), value);
        }
        let error = from_json(&serde_json::json!("square"), &ty("shape")).unwrap_err();
        assert_eq!(error, "variant { circle, empty } has no case `square`");
    }
}
