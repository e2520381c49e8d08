//! JSON that refuses duplicate member names at any depth.
//!
//! serde_json keeps the last of two members with the same name. For request fields veto
//! deserialises into structs that is already an error (`duplicate field`), but free-form objects
//! (a token's custom `claims`, a revocation's `metadata`) are plain maps, where `{"role": "user",
//! "role": "admin"}` silently became `admin`: what a reviewer reads in a request is then not what
//! veto signs or stores. RFC 8259 §4 leaves such objects' meaning to the implementation; veto
//! refuses them. Use with `#[serde(default, deserialize_with = "...")]`.
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value whose objects, at every depth, have no member twice.
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "member {key:?} appears more than once; give each member once"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// For a list of values kept as JSON (a batch parsed item by item).
pub fn values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(Vec::<StrictValue>::deserialize(d)?
        .into_iter()
        .map(|StrictValue(v)| v)
        .collect())
}

/// For an optional free-form value (`metadata`).
pub fn optional_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<StrictValue>::deserialize(d)?.map(|StrictValue(v)| v))
}

/// For an optional object (`claims`): anything but an object is refused too.
pub fn optional_object<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    match Option::<StrictValue>::deserialize(d)? {
        None => Ok(None),
        Some(StrictValue(Value::Object(m))) => Ok(Some(m)),
        Some(_) => Err(de::Error::custom("expected a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Req {
        #[serde(default, deserialize_with = "optional_object")]
        claims: Option<Map<String, Value>>,
        #[serde(default, deserialize_with = "optional_value")]
        metadata: Option<Value>,
    }

    fn parse(s: &str) -> Result<Req, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn duplicates_are_refused_at_every_depth() {
        let e = parse(r#"{"claims": {"role": "user", "role": "admin"}}"#)
            .err()
            .unwrap();
        assert!(e.contains("\"role\" appears more than once"), "{e}");
        assert!(parse(r#"{"metadata": {"a": [{"x": 1, "x": 2}]}}"#).is_err());
        assert!(parse(r#"{"metadata": {"a": {"b": {"c": 1, "c": 1}}}}"#).is_err());
    }

    #[test]
    fn everything_else_is_kept_as_given() {
        let r = parse(
            r#"{"claims": {"a": 1, "b": [true, null, 2.5, "s"], "c": {"d": -3}}, "metadata": "x"}"#,
        )
        .unwrap();
        let claims = Value::Object(r.claims.unwrap());
        assert_eq!(
            claims,
            serde_json::json!({"a": 1, "b": [true, null, 2.5, "s"], "c": {"d": -3}})
        );
        assert_eq!(r.metadata, Some(Value::String("x".into())));
        let none = parse("{}").unwrap();
        assert!(none.claims.is_none() && none.metadata.is_none());
        assert!(parse(r#"{"claims": [1]}"#).is_err());
    }
}
