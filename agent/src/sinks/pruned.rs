//! A stored record parsed without what a sink must not ship: prompt and answer texts are skipped
//! while the JSON is read (never allocated), not removed from a parsed copy afterwards.
use std::fmt;

use serde::{
    de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor},
    Deserialize,
};
use serde_json::{Map, Value};

use crate::{audit::chain::RecordKind, json_scalars::visit_json_scalars};

/// What is left where a cut path was.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The key goes.
    Remove,
    /// An array is left empty (its key stays, as the record's shape says there were events).
    Empty,
}

/// A path from the record's root (`*`: any element of an array) and what is left of it.
type CutPath = (&'static [&'static str], Cut);

/// A prompt, an answer, a stream's events, tool arguments, an approval's excerpt: masked as they
/// are, they are still content. Sizes, types, usage and the finish reason stay.
const REQUEST: &[CutPath] = &[(&["body", "text"], Cut::Remove)];
const RESPONSE: &[CutPath] = &[
    (&["body", "text"], Cut::Remove),
    (&["events"], Cut::Empty),
    (&["assembled", "text"], Cut::Remove),
    (&["assembled", "refusal"], Cut::Remove),
    (&["assembled", "tool_calls", "*", "arguments"], Cut::Remove),
];
const GOVERNANCE: &[CutPath] = &[(&["event", "excerpt"], Cut::Remove)];

fn cuts(kind: RecordKind) -> &'static [CutPath] {
    match kind {
        RecordKind::Request => REQUEST,
        RecordKind::Response => RESPONSE,
        RecordKind::Governance => GOVERNANCE,
        RecordKind::Connection | RecordKind::Prune => &[],
    }
}

/// Parses a stored record of `kind`; without `bodies`, the contents are left out as it is read.
pub fn parse_record(kind: RecordKind, text: &str, bodies: bool) -> serde_json::Result<Value> {
    let cuts = cuts(kind);
    if bodies || cuts.is_empty() {
        return serde_json::from_str(text);
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let all = (1u32 << cuts.len()) - 1;
    let record = Pruned {
        cuts,
        live: all,
        depth: 0,
    }
    .deserialize(&mut reader)?;
    reader.end()?;
    Ok(record)
}

/// A value at `depth`, with the cut paths (`live`: a bit per entry of `cuts`) that still lead
/// through it.
#[derive(Clone, Copy)]
struct Pruned {
    cuts: &'static [CutPath],
    live: u32,
    depth: usize,
}

impl Pruned {
    /// The paths that go on through `step`, and the cut that ends at it, if one does.
    fn through(self, step: &str) -> (Pruned, Option<Cut>) {
        let mut live = 0;
        let mut ends = None;
        for (index, (path, cut)) in self.cuts.iter().enumerate() {
            let matches = self.live & (1 << index) != 0
                && path
                    .get(self.depth)
                    .is_some_and(|part| *part == step || *part == "*");
            if !matches {
                continue;
            }
            if path.len() == self.depth + 1 {
                ends = Some(*cut);
            } else {
                live |= 1 << index;
            }
        }
        let next = Pruned {
            live,
            depth: self.depth + 1,
            ..self
        };
        (next, ends)
    }
}

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.live == 0 {
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let (next, ends) = self.through(&key);
            match ends {
                Some(Cut::Remove) => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Cut::Empty) => {
                    let emptied = map.next_value::<Emptied>()?;
                    object.insert(key, emptied.0);
                }
                None => {
                    let value = map.next_value_seed(next)?;
                    object.insert(key, value);
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Only keys end a cut path; `*` leads through every element.
        let (next, _) = self.through("*");
        let mut array = Vec::new();
        while let Some(value) = seq.next_element_seed(next)? {
            array.push(value);
        }
        Ok(Value::Array(array))
    }

    visit_json_scalars!();
}

/// An array read and dropped: `[]` in its place (anything else that stood there: null).
struct Emptied(Value);

impl<'de> Deserialize<'de> for Emptied {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Emptied, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = Emptied;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Emptied, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Emptied(Value::Array(Vec::new())))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Emptied, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Emptied(Value::Null))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }

            fn visit_str<E>(self, _: &str) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }

            fn visit_unit<E>(self) -> Result<Emptied, E> {
                Ok(Emptied(Value::Null))
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pruned(kind: RecordKind, record: Value) -> Value {
        parse_record(kind, &record.to_string(), false).expect("parses")
    }

    #[test]
    fn contents_are_left_out_and_the_rest_kept() {
        let request = json!({"method": "POST", "body": {"content_type": "application/json",
            "size": 12, "text": "{\"x\":\"<EMAIL>\"}", "truncated": false}, "n": -3, "f": 1.5});
        assert_eq!(
            pruned(RecordKind::Request, request),
            json!({"method": "POST", "body": {"content_type": "application/json",
            "size": 12, "truncated": false}, "n": -3, "f": 1.5})
        );
        let response = json!({"body": null, "events": [{"data": "hi"}, {"data": "there"}],
            "assembled": {"text": "hello", "refusal": null, "tool_calls": [{"index": 0,
            "name": "f", "arguments": "{}"}, {"index": 1, "name": "g", "arguments": "{\"a\":1}"}],
            "finish_reason": "stop", "usage": {"total_tokens": 3}}, "text": "not a body"});
        assert_eq!(
            pruned(RecordKind::Response, response),
            json!({"body": null, "events": [], "assembled": {"tool_calls": [{"index": 0,
            "name": "f"}, {"index": 1, "name": "g"}], "finish_reason": "stop",
            "usage": {"total_tokens": 3}}, "text": "not a body"})
        );
        let approval =
            json!({"event": {"type": "approval_requested", "excerpt": "hi", "rule": "r"}});
        assert_eq!(
            pruned(RecordKind::Governance, approval),
            json!({"event": {"type": "approval_requested", "rule": "r"}})
        );
        // A connection has no content: parsed as it is.
        let connection = json!({"sni": "api.openai.com", "text": "kept"});
        assert_eq!(
            pruned(RecordKind::Connection, connection.clone()),
            connection
        );
    }

    #[test]
    fn with_bodies_the_record_is_read_whole() {
        let response = json!({"body": {"text": "hello"}, "events": [{"data": "hi"}]});
        let text = response.to_string();
        assert_eq!(
            parse_record(RecordKind::Response, &text, true).unwrap(),
            response
        );
    }

    #[test]
    fn a_malformed_record_is_an_error_not_a_partial_value() {
        for text in [
            r#"{"body": {"text": "x""#,
            r#"{"events": [1, 2"#,
            r#"{} trailing"#,
        ] {
            assert!(
                parse_record(RecordKind::Response, text, false).is_err(),
                "{text}"
            );
        }
    }
}
