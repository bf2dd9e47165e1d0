//! The price table: USD per million tokens by model, shipped with Warden and overridable, read
//! once at start; a model is priced by the longest entry its name starts with.
use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use crate::policy::limit_rules::MicroUsd;

/// The table Warden ships (OpenAI's list prices).
const SHIPPED: &str = include_str!("prices.toml");

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    models: BTreeMap<String, Price>,
}

#[derive(Clone, Debug)]
pub struct PriceTable {
    /// Longest names first, so the first prefix found is the longest.
    models: Vec<(String, Price)>,
}

impl PriceTable {
    pub fn shipped() -> PriceTable {
        // The shipped file is checked by a unit test; failing here would be a build mistake.
        PriceTable::parse(SHIPPED, "prices.toml (shipped)").expect("the shipped price table parses")
    }

    /// A user's table, replacing the shipped one whole.
    pub fn load(path: &Path) -> Result<PriceTable, PriceError> {
        let text = std::fs::read_to_string(path).map_err(|error| PriceError::Invalid {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        PriceTable::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<PriceTable, PriceError> {
        let invalid = |reason: String| PriceError::Invalid {
            path: origin.to_string(),
            reason,
        };
        let file: PriceFile = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        let mut models: Vec<(String, Price)> = file.models.into_iter().collect();
        for (model, price) in &models {
            let valid = |x: f64| x.is_finite() && x >= 0.0;
            if model.is_empty() || !valid(price.input) || !valid(price.output) {
                return Err(invalid(format!(
                    "models.{model:?}: a price is a model name and two non-negative numbers"
                )));
            }
        }
        models.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(PriceTable { models })
    }

    /// The price of `model`: the longest entry it starts with.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .find(|(name, _)| model.starts_with(name.as_str()))
            .map(|(_, price)| *price)
    }

    /// The cost of a call in micro-dollars, rounded up (a budget never under-counts).
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<MicroUsd> {
        let price = self.price(model)?;
        // USD per million tokens is exactly micro-USD per token.
        let micro = price.input * input_tokens as f64 + price.output * output_tokens as f64;
        Some(micro.ceil() as MicroUsd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_prices_by_longest_prefix() {
        let table = PriceTable::shipped();
        assert_eq!(table.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(table.price("gpt-4o-2024-08-06").unwrap().input, 2.50);
        assert_eq!(table.price("o3-mini").unwrap().output, 4.40);
        assert_eq!(table.price("o3").unwrap().output, 8.00);
        assert!(table.price("llama-3").is_none());
    }

    #[test]
    fn costs_are_exact_micro_dollars_rounded_up() {
        let table = PriceTable::shipped();
        // 1000 in at 2.50/M + 500 out at 10.00/M = 2500 + 5000 micro-USD.
        assert_eq!(table.cost("gpt-4o", 1000, 500), Some(7_500));
        // 1 token of gpt-4o-mini input is 0.15 micro-USD: rounded up to 1.
        assert_eq!(table.cost("gpt-4o-mini", 1, 0), Some(1));
        assert_eq!(table.cost("unknown-model", 1, 1), None);
    }

    #[test]
    fn a_bad_table_is_refused_naming_the_model() {
        let error = PriceTable::parse(
            "[models]\n\"m\" = { input = -1.0, output = 0.0 }\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("p.toml") && error.contains("\"m\""),
            "{error}"
        );
        let error = PriceTable::parse("[models]\n\"m\" = { input = 1.0 }\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("output"), "{error}");
    }
}
