//! `warden alerts`: the anomaly alerts on record, read from the audit chain (root).
use clap::Args;
use serde::Serialize;

use super::{audit::open_reader, time_arg::parse_time_arg_now};
use crate::{
    audit::{
        format_timestamp_us,
        governance::{AlertDetails, GovernanceEvent, GovernanceRecord},
    },
    config::Config,
};

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts from this time on: RFC 3339, a date, or a duration ago (90s, 15m, 2h, 7d).
    /// Default: the last 7 days.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg_now)]
    pub since: Option<i64>,
    /// One JSON array of alerts instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// One alert, as listed (its `--json` object).
#[derive(Debug, Serialize)]
pub struct AlertLine {
    /// RFC 3339 UTC.
    pub at: String,
    pub detector: String,
    pub selector: String,
    pub action: String,
    pub summary: String,
    pub details: AlertDetails,
    /// The exchange that tipped it (`warden sessions show ID`).
    pub exchange_id: Option<String>,
}

const DEFAULT_SINCE_US: i64 = 7 * 24 * 3_600_000_000;

pub fn run(config: &Config, args: &AlertsArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .unwrap_or_else(|| crate::ids::now_us() - DEFAULT_SINCE_US);
    let reader = open_reader(config)?;
    let alerts = alerts(reader.governance_since(since)?);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(());
    }
    if alerts.is_empty() {
        println!("no anomaly alerts since {}", format_timestamp_us(since));
    }
    for alert in &alerts {
        println!(
            "{}  {} ({})  {}  {}{}",
            alert.at,
            alert.detector,
            alert.action,
            alert.selector,
            one_line(&alert.summary),
            alert
                .exchange_id
                .as_ref()
                .map_or_else(String::new, |id| format!("  [{id}]"))
        );
    }
    Ok(())
}

/// The alerts among governance records, oldest first.
fn alerts(records: Vec<GovernanceRecord>) -> Vec<AlertLine> {
    records
        .into_iter()
        .filter_map(|record| match record.event {
            GovernanceEvent::Alert {
                detector,
                selector,
                action,
                summary,
                details,
            } => Some(AlertLine {
                at: format_timestamp_us(record.at_us),
                detector,
                selector,
                action,
                summary,
                details,
                exchange_id: record.exchange_id,
            }),
            _ => None,
        })
        .collect()
}

/// Recorded text on one terminal line: control characters shown escaped.
fn one_line(text: &str) -> String {
    text.chars().flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_alerts_are_listed_with_their_exchange() {
        let alert = GovernanceRecord {
            at_us: 0,
            exchange_id: Some("ex-1".into()),
            event: GovernanceEvent::Alert {
                detector: "probing".into(),
                selector: "account:a".into(),
                action: "block".into(),
                summary: "5 requests denied\nwithin 60 s".into(),
                details: AlertDetails::default(),
            },
        };
        let other = GovernanceRecord {
            at_us: 1,
            exchange_id: None,
            event: GovernanceEvent::Restored {
                selector: "account:a".into(),
                by: Default::default(),
            },
        };
        let listed = alerts(vec![alert, other]);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].detector, "probing");
        assert_eq!(listed[0].exchange_id.as_deref(), Some("ex-1"));
        assert_eq!(listed[0].at, "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            one_line(&listed[0].summary),
            "5 requests denied\\nwithin 60 s"
        );
    }
}
