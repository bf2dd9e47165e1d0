//! Label values with bounded cardinality: each label keeps the first N distinct values it sees and
//! reports every later one as `other`, so no caller can grow the exposition without limit.
use std::{
    collections::HashSet,
    fmt::Write,
    sync::{Arc, RwLock},
};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::identity::Identity;

/// What a value past a label's bound (or longer than [`MAX_VALUE_LEN`]) is reported as.
pub const OTHER: &str = "other";
/// The account label of a caller with neither an account nor a systemd unit.
pub const UNATTRIBUTED: &str = "unattributed";
/// Longer values are reported as `other`: a label value is a name, not a payload.
pub const MAX_VALUE_LEN: usize = 128;

/// A label value shared by every series that carries it: cloning it is a reference count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabelValue(Arc<str>);

impl LabelValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// The distinct values one label has taken, up to `limit`; later values map to `other`.
#[derive(Debug)]
pub struct BoundedValues {
    limit: usize,
    seen: RwLock<HashSet<Arc<str>>>,
    other: LabelValue,
    empty: LabelValue,
}

impl BoundedValues {
    pub fn new(limit: usize) -> Self {
        BoundedValues {
            limit,
            seen: RwLock::new(HashSet::new()),
            other: LabelValue(Arc::from(OTHER)),
            empty: LabelValue(Arc::from("")),
        }
    }

    /// The label value for `value`: shared with earlier series when seen before (a read lock and a
    /// hash, no allocation), `other` once the bound is reached.
    pub fn get(&self, value: &str) -> LabelValue {
        if value.is_empty() {
            return self.empty.clone();
        }
        if value.len() > MAX_VALUE_LEN {
            return self.other.clone();
        }
        // The set only ever holds label values: a panic elsewhere cannot leave it inconsistent.
        if let Some(known) = self
            .seen
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(value)
        {
            return LabelValue(known.clone());
        }
        let mut seen = self
            .seen
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = seen.get(value) {
            return LabelValue(known.clone());
        }
        if seen.len() >= self.limit {
            return self.other.clone();
        }
        let value: Arc<str> = Arc::from(value);
        seen.insert(value.clone());
        LabelValue(value)
    }
}

/// Who a caller is, as a label: the configured account, else the systemd unit, else
/// `unattributed`. Never a pid, user, command line or anything the caller sends.
pub fn account_name(identity: &Identity) -> &str {
    identity
        .account
        .as_deref()
        .or(identity.unit.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or(UNATTRIBUTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::identity;

    #[test]
    fn the_first_values_are_kept_and_later_ones_are_other() {
        let values = BoundedValues::new(2);
        assert_eq!(values.get("gpt-4o").as_str(), "gpt-4o");
        assert_eq!(values.get("gpt-4.1").as_str(), "gpt-4.1");
        assert_eq!(values.get("gpt-5").as_str(), OTHER, "past the bound");
        assert_eq!(values.get("gpt-4o").as_str(), "gpt-4o", "known values stay");
        assert_eq!(values.get("").as_str(), "", "empty is not counted");
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(BoundedValues::new(10).get(&long).as_str(), OTHER);
    }

    #[test]
    fn a_known_value_is_shared_not_copied() {
        let values = BoundedValues::new(4);
        let first = values.get("billing-agent");
        let again = values.get("billing-agent");
        assert!(Arc::ptr_eq(&first.0, &again.0));
    }

    #[test]
    fn the_account_label_is_the_account_else_the_unit_else_unattributed() {
        assert_eq!(
            account_name(&identity(Some("billing-agent"), Some("agent.service"))),
            "billing-agent"
        );
        assert_eq!(
            account_name(&identity(None, Some("agent.service"))),
            "agent.service"
        );
        assert_eq!(account_name(&identity(None, None)), UNATTRIBUTED);
        assert_eq!(account_name(&identity(Some(""), None)), UNATTRIBUTED);
    }
}
