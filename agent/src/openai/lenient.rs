//! A string field that borrows from the JSON when it can and ignores any non-string value.
//!
//! OpenAI payloads are wide and evolve; a field we read as a string turning up as an object or a
//! number in some event type must cost us that field, not the whole event. Plain
//! `Option<Cow<str>>` would also always allocate (serde only borrows a `Cow` that is not wrapped).
use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LenientStr<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'a> LenientStr<'a> {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub(crate) fn into_string(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientStrVisitor)
    }
}

struct LenientStrVisitor;

impl<'de> Visitor<'de> for LenientStrVisitor {
    type Value = LenientStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Borrowed(value))))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Owned(value.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Owned(value))))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(LenientStr(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(LenientStr(None))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::Deserialize;

    use super::LenientStr;

    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default, borrow)]
        value: LenientStr<'a>,
        after: u32,
    }

    fn probe(json: &str) -> Probe<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plain_strings_borrow_and_escaped_strings_are_owned() {
        let plain = probe(r#"{"value":"abc","after":1}"#);
        assert!(matches!(plain.value.0, Some(Cow::Borrowed("abc"))));
        let escaped = probe(r#"{"value":"a\nb","after":1}"#);
        assert!(matches!(escaped.value.0, Some(Cow::Owned(ref s)) if s == "a\nb"));
    }

    #[test]
    fn other_values_are_none_and_do_not_derail_the_rest() {
        for value in [
            "null",
            "1",
            "-1",
            "1.5",
            "true",
            r#"[1,{"a":[]}]"#,
            r#"{"a":{"b":"c"}}"#,
        ] {
            let json = format!(r#"{{"value":{value},"after":7}}"#);
            let parsed = probe(&json);
            assert_eq!(parsed.value, LenientStr(None), "{value}");
            assert_eq!(parsed.after, 7, "{value}");
        }
        assert_eq!(probe(r#"{"after":7}"#).value, LenientStr(None));
    }
}
