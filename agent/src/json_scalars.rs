//! The scalar half of a serde `Visitor` that builds a `serde_json::Value`, for the visitors that
//! decide objects and arrays themselves (openai::strict_json, sinks::pruned).

/// Expands to the `visit_*` methods of every JSON scalar, each giving its `Value`.
macro_rules! visit_json_scalars {
    () => {
        fn visit_bool<E>(self, value: bool) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Bool(value))
        }

        fn visit_i64<E>(self, value: i64) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Number(value.into()))
        }

        fn visit_u64<E>(self, value: u64) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Number(value.into()))
        }

        fn visit_f64<E>(self, value: f64) -> Result<serde_json::Value, E> {
            Ok(serde_json::Number::from_f64(value)
                .map_or(serde_json::Value::Null, serde_json::Value::Number))
        }

        fn visit_str<E>(self, value: &str) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::String(value.to_owned()))
        }

        fn visit_string<E>(self, value: String) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::String(value))
        }

        fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Null)
        }

        fn visit_none<E>(self) -> Result<serde_json::Value, E> {
            Ok(serde_json::Value::Null)
        }
    };
}

pub(crate) use visit_json_scalars;
