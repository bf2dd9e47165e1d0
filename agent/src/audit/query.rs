//! Exchange filters translated to SQL over the `exchanges` indexes; every value is a bound
//! parameter, only column names and operators are written into the SQL text.
use rusqlite::{types::Value, Connection};

use super::{record::Outcome, AuditError};
use crate::identity::selector::{Glob, IdentitySelector};

/// What `outcome` shows for an exchange without a response record (yet).
pub const INCOMPLETE: &str = "incomplete";

/// A wildcard glob matching at least this many rows is checked while walking the time index
/// (stopping at the limit) instead of read through its own index, whose matches would then all
/// have to be sorted by time.
pub(crate) const GLOB_PROBE_CAP: i64 = 4096;

/// Which exchanges to list or export; every set field must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeFilter {
    /// Started at or after (unix µs).
    pub since_us: Option<i64>,
    /// Started before (unix µs, exclusive).
    pub until_us: Option<i64>,
    pub identity: Option<IdentitySelector>,
    /// A glob (`*`, `?`), case-sensitive.
    pub model: Option<String>,
    pub endpoint: Option<String>,
    /// An outcome (`ok`, `upstream_error`, …) or `incomplete`.
    pub outcome: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    NewestFirst,
    OldestFirst,
}

struct Condition {
    column: &'static str,
    operator: &'static str,
    value: Option<Value>,
}

/// The `exchanges` column an identity selector looks at.
fn selector_column(selector: &IdentitySelector) -> &'static str {
    match selector {
        IdentitySelector::Account(_) => "account",
        IdentitySelector::Unit(_) => "unit",
        IdentitySelector::User(_) => "\"user\"",
        IdentitySelector::Uid(_) => "uid",
        IdentitySelector::Cgroup(_) => "cgroup",
        IdentitySelector::Exe(_) => "exe",
        IdentitySelector::Pid(_) => "pid",
        IdentitySelector::ServiceAccount(_) => "k8s_sa",
    }
}

/// `column = ?` for a glob without wildcards (an index lookup), else `column GLOB ?`.
fn glob_condition(column: &'static str, glob: &Glob) -> Condition {
    let (operator, value) = match glob.literal() {
        Some(literal) => ("=", literal.to_owned()),
        None => ("GLOB", glob.sqlite_pattern()),
    };
    Condition {
        column,
        operator,
        value: Some(Value::Text(value)),
    }
}

fn conditions(filter: &ExchangeFilter) -> Result<Vec<Condition>, AuditError> {
    let condition = |column, operator, value| Condition {
        column,
        operator,
        value,
    };
    let mut conditions = Vec::new();
    if let Some(since) = filter.since_us {
        conditions.push(condition("started_us", ">=", Some(Value::Integer(since))));
    }
    if let Some(until) = filter.until_us {
        conditions.push(condition("started_us", "<", Some(Value::Integer(until))));
    }
    if let Some(selector) = &filter.identity {
        let column = selector_column(selector);
        conditions.push(match selector {
            IdentitySelector::Uid(n) | IdentitySelector::Pid(n) => {
                condition(column, "=", Some(Value::Integer(i64::from(*n))))
            }
            IdentitySelector::Account(glob)
            | IdentitySelector::Unit(glob)
            | IdentitySelector::User(glob)
            | IdentitySelector::Cgroup(glob)
            | IdentitySelector::Exe(glob)
            | IdentitySelector::ServiceAccount(glob) => glob_condition(column, glob),
        });
    }
    if let Some(model) = &filter.model {
        conditions.push(glob_condition("model", &Glob::new(model.as_str())));
    }
    if let Some(endpoint) = &filter.endpoint {
        conditions.push(condition(
            "endpoint",
            "=",
            Some(Value::Text(endpoint.clone())),
        ));
    }
    if let Some(outcome) = &filter.outcome {
        if outcome == INCOMPLETE {
            conditions.push(condition("outcome", "IS NULL", None));
        } else if Outcome::ALL.iter().any(|o| o.as_str() == outcome) {
            conditions.push(condition(
                "outcome",
                "=",
                Some(Value::Text(outcome.clone())),
            ));
        } else {
            let valid: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            return Err(AuditError::InvalidFilter(format!(
                "unknown outcome {outcome:?}: valid outcomes are {}, {INCOMPLETE}",
                valid.join(", ")
            )));
        }
    }
    Ok(conditions)
}

/// The SELECT of `columns` for `filter`, with its parameters.
///
/// With a limit, a wildcard glob that matches many rows (`probe_cap` or more) is written
/// `+column GLOB ?`, which keeps SQLite from using that column's index: walking the time index
/// and stopping after `limit` matches beats sorting every match.
pub(crate) fn select_sql(
    conn: &Connection,
    columns: &str,
    filter: &ExchangeFilter,
    order: Order,
    probe_cap: i64,
) -> Result<(String, Vec<Value>), AuditError> {
    let (clauses, mut values) = where_clauses(conn, filter, filter.limit.is_some(), probe_cap)?;
    let mut sql = select(columns, &clauses, order);
    if let Some(limit) = filter.limit {
        sql.push_str(" LIMIT ?");
        values.push(Value::Integer(to_integer(limit)));
    }
    Ok((sql, values))
}

/// `filter`'s matches oldest first, a page at a time: each page is its own query resuming after
/// the (started_us, rowid) of the previous page's last row, so no read snapshot spans the walk.
/// `filter.limit` is the caller's to apply across pages.
pub(crate) struct Pages {
    first: String,
    next: String,
    values: Vec<Value>,
}

impl Pages {
    /// `columns` must end with `started_us, exchanges.rowid`: the cursor is read from them.
    pub(crate) fn new(
        conn: &Connection,
        columns: &str,
        filter: &ExchangeFilter,
        probe_cap: i64,
    ) -> Result<Pages, AuditError> {
        // Every page is limited, so a broad glob is checked while walking the time index.
        let (mut clauses, values) = where_clauses(conn, filter, true, probe_cap)?;
        let first = format!("{} LIMIT ?", select(columns, &clauses, Order::OldestFirst));
        // `started_us >= ?` gives SQLite the index range; the row value resumes within it.
        clauses.push("started_us >= ?".to_owned());
        clauses.push("(started_us, exchanges.rowid) > (?, ?)".to_owned());
        let next = format!("{} LIMIT ?", select(columns, &clauses, Order::OldestFirst));
        Ok(Pages {
            first,
            next,
            values,
        })
    }

    /// The query for at most `limit` rows after `after` (started_us, rowid), with its parameters.
    pub(crate) fn page(&self, after: Option<(i64, i64)>, limit: usize) -> (&str, Vec<Value>) {
        let mut values = self.values.clone();
        let sql = match after {
            None => &self.first,
            Some((started_us, rowid)) => {
                values.extend([
                    Value::Integer(started_us),
                    Value::Integer(started_us),
                    Value::Integer(rowid),
                ]);
                &self.next
            }
        };
        values.push(Value::Integer(to_integer(limit)));
        (sql, values)
    }
}

fn to_integer(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The WHERE conditions of `filter`; `limited` says whether the query stops after a few rows,
/// which decides how a broad glob is checked (see `select_sql`).
fn where_clauses(
    conn: &Connection,
    filter: &ExchangeFilter,
    limited: bool,
    probe_cap: i64,
) -> Result<(Vec<String>, Vec<Value>), AuditError> {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    for condition in conditions(filter)? {
        let mut unindexed = false;
        if let (Some(value), "GLOB", true) = (&condition.value, condition.operator, limited) {
            let probe = format!(
                "SELECT count(*) FROM (SELECT 1 FROM exchanges WHERE {} GLOB ?1 LIMIT ?2)",
                condition.column
            );
            let matches: i64 =
                conn.query_row(&probe, rusqlite::params![value, probe_cap], |row| {
                    row.get(0)
                })?;
            unindexed = matches >= probe_cap;
        }
        let plus = if unindexed { "+" } else { "" };
        let placeholder = if condition.value.is_some() { " ?" } else { "" };
        clauses.push(format!(
            "{plus}{} {}{placeholder}",
            condition.column, condition.operator
        ));
        values.extend(condition.value);
    }
    Ok((clauses, values))
}

fn select(columns: &str, clauses: &[String], order: Order) -> String {
    let mut sql = format!("SELECT {columns} FROM exchanges");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    let direction = match order {
        Order::NewestFirst => "DESC",
        Order::OldestFirst => "ASC",
    };
    // rowid is the last column of every index, so this order is read straight off the index.
    sql.push_str(&format!(
        " ORDER BY started_us {direction}, exchanges.rowid {direction}"
    ));
    sql
}
