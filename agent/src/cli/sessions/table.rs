//! `sessions list`: exchange summaries as a table with aligned columns.
use super::text::{duration, one_line};
use crate::{audit::ExchangeSummary, cli::time_arg::table_time};

const HEADERS: [&str; 9] = [
    "ID", "TIME", "IDENTITY", "MODEL", "ENDPOINT", "OUTCOME", "MASKED", "TOKENS", "DURATION",
];
/// TOKENS and DURATION are numbers: right-aligned.
const RIGHT_ALIGNED: [bool; 9] = [false, false, false, false, false, false, false, true, true];

pub fn render(rows: &[ExchangeSummary]) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = line(&HEADERS.map(str::to_string), &widths);
    for row in &cells {
        table.push_str(&line(row, &widths));
    }
    table
}

fn line(cells: &[String; 9], widths: &[usize; 9]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .zip(RIGHT_ALIGNED)
        .map(|((cell, &width), right)| {
            if right {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            }
        })
        .collect();
    let mut line = padded.join("  ").trim_end().to_string();
    line.push('\n');
    line
}

fn cells(row: &ExchangeSummary) -> [String; 9] {
    let dash = || "-".to_string();
    // Read back from the store, which is a file: nothing in it reaches the terminal raw.
    [
        one_line(&row.id),
        table_time(&row.started_at),
        identity(row),
        row.model.as_deref().map_or_else(dash, one_line),
        one_line(&row.endpoint),
        one_line(&row.outcome),
        masked(row.masked),
        row.total_tokens
            .map_or_else(dash, |tokens| tokens.to_string()),
        row.duration_ms.map_or_else(dash, duration),
    ]
}

/// The most useful name recorded: the account, else the unit, else the container, else
/// `user:exe-name` (the uid when the user has no name); with the pid: `billing[4242]`.
fn identity(row: &ExchangeSummary) -> String {
    let named = row
        .account
        .as_deref()
        .or(row.unit.as_deref())
        .or(row.container.as_deref())
        .map(one_line);
    let who = named.unwrap_or_else(|| {
        let user = row
            .user
            .as_deref()
            .map_or_else(|| format!("uid {}", row.uid), one_line);
        let exe = row
            .exe
            .as_deref()
            .map(|exe| exe.rsplit('/').next().unwrap_or(exe));
        match exe {
            Some(exe) if !exe.is_empty() => format!("{user}:{}", one_line(exe)),
            _ => user,
        }
    });
    format!("{who}[{}]", row.pid)
}

/// Whether the policy masked anything in the exchange: `no`, or `yes (N)` with N values.
fn masked(values: u64) -> String {
    match values {
        0 => "no".to_string(),
        n => format!("yes ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ExchangeSummary {
        ExchangeSummary {
            id: "ex-2".into(),
            started_at: "2026-11-20T22:10:14.123456Z".into(),
            started_us: 1_795_212_614_123_456,
            pid: 4242,
            uid: 1000,
            user: Some("alice".into()),
            account: Some("billing-agent".into()),
            unit: Some("billing.service".into()),
            exe: Some("/usr/bin/python3".into()),
            cgroup: Some("/system.slice/billing.service".into()),
            container: None,
            model: Some("gpt-4o-mini".into()),
            endpoint: "chat.completions".into(),
            status: Some(200),
            outcome: "ok".into(),
            input_tokens: Some(1200),
            output_tokens: Some(345),
            total_tokens: Some(1545),
            duration_ms: Some(1834.2),
            masked: 3,
        }
    }

    #[test]
    fn columns_align_and_identity_prefers_the_account() {
        let incomplete = ExchangeSummary {
            id: "ex-1".into(),
            started_at: "2026-11-20T22:09:58.000001Z".into(),
            pid: 17,
            user: Some("bob".into()),
            account: None,
            unit: None,
            model: None,
            endpoint: "models".into(),
            status: None,
            outcome: "incomplete".into(),
            input_tokens: None,
            output_tokens: None,
            total_tokens: None,
            duration_ms: Some(85.0),
            masked: 0,
            ..summary()
        };
        let expected = "\
ID    TIME                 IDENTITY             MODEL        ENDPOINT          OUTCOME     MASKED   TOKENS  DURATION
ex-2  2026-11-20 22:10:14  billing-agent[4242]  gpt-4o-mini  chat.completions  ok          yes (3)    1545      1.8s
ex-1  2026-11-20 22:09:58  bob:python3[17]      -            models            incomplete  no            -      85ms
";
        assert_eq!(render(&[summary(), incomplete]), expected);
    }

    #[test]
    fn identity_falls_back_to_the_unit_the_container_then_user_and_exe() {
        let unit = ExchangeSummary {
            account: None,
            ..summary()
        };
        assert_eq!(identity(&unit), "billing.service[4242]");
        let container = ExchangeSummary {
            unit: None,
            container: Some("web-1".into()),
            ..unit
        };
        assert_eq!(identity(&container), "web-1[4242]");
        let user = ExchangeSummary {
            container: None,
            ..container
        };
        assert_eq!(identity(&user), "alice:python3[4242]");
        let uid = ExchangeSummary { user: None, ..user };
        assert_eq!(identity(&uid), "uid 1000:python3[4242]");
        let no_exe = ExchangeSummary { exe: None, ..uid };
        assert_eq!(identity(&no_exe), "uid 1000[4242]");
    }
}
