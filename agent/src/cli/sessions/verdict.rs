//! The policy's part of `sessions show`: the decision, the rules that matched, what was masked.
use std::collections::BTreeMap;

use super::text::one_line;
use crate::audit::record::PolicyRecord;

/// Per mask rule, per recognizer, how many values were masked (as recorded).
pub type MaskCounts = BTreeMap<String, BTreeMap<String, u64>>;

/// `deny by rule no-gpt4; matched no-gpt4, mask-pii`; `allow; no rule matched`.
pub fn decision(policy: &PolicyRecord) -> String {
    if policy.verdict.is_empty() {
        // Records written before policies existed carry no decision.
        return "not recorded".to_string();
    }
    let mut text = one_line(&policy.verdict);
    if let Some(rule) = &policy.rule {
        text.push_str(&format!(" by rule {}", one_line(rule)));
    }
    if policy.matched.is_empty() {
        text.push_str("; no rule matched");
    } else {
        let matched: Vec<String> = policy.matched.iter().map(|rule| one_line(rule)).collect();
        text.push_str(&format!("; matched {}", matched.join(", ")));
    }
    if let Some(grant) = &policy.grant {
        text.push_str(&format!("; passed under grant {}", one_line(grant)));
    }
    text
}

/// `EMAIL 2, PHONE 1 (rule mask-pii)`, rules joined by `; `; `nothing` when no value was masked.
pub fn masked(counts: &MaskCounts) -> String {
    let per_rule: Vec<String> = counts
        .iter()
        .filter(|(_, by_recognizer)| by_recognizer.values().any(|&n| n > 0))
        .map(|(rule, by_recognizer)| {
            let values: Vec<String> = by_recognizer
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(recognizer, n)| format!("{} {n}", one_line(recognizer)))
                .collect();
            format!("{} (rule {})", values.join(", "), one_line(rule))
        })
        .collect();
    if per_rule.is_empty() {
        "nothing".to_string()
    } else {
        per_rule.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, &str, u64)]) -> MaskCounts {
        let mut counts = MaskCounts::new();
        for &(rule, recognizer, n) in entries {
            counts
                .entry(rule.to_string())
                .or_default()
                .insert(recognizer.to_string(), n);
        }
        counts
    }

    #[test]
    fn the_decision_names_the_deciding_rule_and_every_match() {
        let denied = PolicyRecord {
            verdict: "deny".into(),
            rule: Some("no-gpt4".into()),
            matched: vec!["no-gpt4".into(), "mask-pii".into()],
            masked: MaskCounts::new(),
            grant: None,
        };
        assert_eq!(
            decision(&denied),
            "deny by rule no-gpt4; matched no-gpt4, mask-pii"
        );
        let granted = PolicyRecord {
            verdict: "approve".into(),
            rule: Some("review".into()),
            matched: vec!["review".into()],
            grant: Some("gr-1".into()),
            ..PolicyRecord::default()
        };
        assert_eq!(
            decision(&granted),
            "approve by rule review; matched review; passed under grant gr-1"
        );
        let allowed = PolicyRecord {
            verdict: "allow".into(),
            ..PolicyRecord::default()
        };
        assert_eq!(decision(&allowed), "allow; no rule matched");
        assert_eq!(decision(&PolicyRecord::default()), "not recorded");
    }

    #[test]
    fn mask_counts_are_listed_per_rule_and_recognizer() {
        let both = counts(&[
            ("mask-keys", "OPENAI_KEY", 1),
            ("mask-pii", "EMAIL", 2),
            ("mask-pii", "PHONE", 1),
        ]);
        assert_eq!(
            masked(&both),
            "OPENAI_KEY 1 (rule mask-keys); EMAIL 2, PHONE 1 (rule mask-pii)"
        );
        assert_eq!(masked(&MaskCounts::new()), "nothing");
        assert_eq!(masked(&counts(&[("mask-pii", "EMAIL", 0)])), "nothing");
    }
}
