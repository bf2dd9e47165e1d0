//! Tests of the reader: round trips, every filter, index use, export order.
use super::*;
use crate::{
    audit::{
        query::{select_sql, Order, Pages},
        record::{AuditRecord, IdentitySnapshot, Outcome},
        testing::{self, identity, store, T0},
        AuditWriter, WriterOptions,
    },
    identity::selector::IdentitySelector,
};

const SECOND: i64 = 1_000_000;

struct Fixture {
    id: &'static str,
    identity: IdentitySnapshot,
    model: Option<&'static str>,
    endpoint: &'static str,
    outcome: Option<Outcome>,
}

/// (pid, account, unit, user, uid, exe) → an identity with cgroup and service account to match.
type Who<'a> = (u32, &'a str, &'a str, &'a str, u32, &'a str);

fn who((pid, account, unit, user, uid, exe): Who<'_>) -> IdentitySnapshot {
    IdentitySnapshot {
        unit: Some(unit.to_owned()),
        user: Some(user.to_owned()),
        uid,
        exe: Some(exe.to_owned()),
        cgroup: Some(format!("/system.slice/{unit}")),
        k8s_sa: Some(format!("prod/{account}")),
        ..identity(pid, Some(account))
    }
}

/// ex-N starts at T0 + (N-1) seconds.
fn fixtures() -> Vec<Fixture> {
    let nobody = IdentitySnapshot {
        pid: 14,
        exe: Some("/usr/bin/curl".into()),
        ..IdentitySnapshot::default()
    };
    let fixture = |id, identity, model, endpoint, outcome| Fixture {
        id,
        identity,
        model,
        endpoint,
        outcome,
    };
    let python = "/usr/bin/python3";
    vec![
        fixture(
            "ex-1",
            who((11, "billing-a", "a.service", "alice", 1000, python)),
            Some("gpt-4o"),
            "chat.completions",
            Some(Outcome::Ok),
        ),
        fixture(
            "ex-2",
            who((12, "billing-b", "b.service", "bob", 1001, "/usr/bin/node")),
            Some("gpt-4o-mini"),
            "responses",
            Some(Outcome::ClientAborted),
        ),
        fixture(
            "ex-3",
            who((
                13,
                "ops",
                "ops.service",
                "alice",
                1000,
                "/usr/bin/python3.12",
            )),
            Some("o3"),
            "embeddings",
            None,
        ),
        fixture("ex-4", nobody, None, "models", Some(Outcome::UpstreamError)),
        fixture(
            "ex-5",
            who((15, "team[1]", "a.service", "carol", 1002, "/opt/x")),
            Some("gpt-4o"),
            "chat.completions",
            Some(Outcome::Ok),
        ),
    ]
}

fn populated() -> (tempfile::TempDir, AuditReader) {
    let (dir, db) = store();
    let mut records = Vec::new();
    for (n, f) in (0..).zip(fixtures()) {
        let at = T0 + n * SECOND;
        let mut request = testing::request(f.id, at, f.identity.clone());
        request.model = f.model.map(str::to_owned);
        request.endpoint = f.endpoint.to_owned();
        records.push(AuditRecord::Request(request));
        if let Some(outcome) = f.outcome {
            let response = testing::response(f.id, at + 1000, outcome);
            records.push(AuditRecord::Response(response));
        }
    }
    testing::write(&db, records);
    (dir, AuditReader::open(&db).unwrap())
}

fn ids(reader: &AuditReader, filter: &ExchangeFilter) -> Vec<String> {
    let list = reader.list(filter).unwrap();
    list.into_iter().map(|s| s.id).collect()
}

fn filter(set: impl FnOnce(&mut ExchangeFilter)) -> ExchangeFilter {
    let mut filter = ExchangeFilter::default();
    set(&mut filter);
    filter
}

fn who_is(selector: &str) -> ExchangeFilter {
    filter(|f| f.identity = Some(IdentitySelector::parse(selector).unwrap()))
}

fn model(glob: &str) -> ExchangeFilter {
    filter(|f| f.model = Some(glob.into()))
}

fn outcome(outcome: &str) -> ExchangeFilter {
    filter(|f| f.outcome = Some(outcome.into()))
}

#[test]
fn request_and_response_round_trip() {
    let (_dir, db) = store();
    let records = testing::exchange("ex-1", T0, identity(42, Some("billing")));
    testing::write(&db, records.clone());
    let reader = AuditReader::open(&db).unwrap();

    let list = reader.list(&ExchangeFilter::default()).unwrap();
    assert_eq!(list.len(), 1);
    let summary = &list[0];
    assert_eq!(summary.started_at, "2023-11-14T22:13:20.000000Z");
    assert_eq!((summary.pid, summary.uid), (42, 1000));
    assert_eq!(summary.account.as_deref(), Some("billing"));
    assert_eq!(summary.outcome, "ok");
    assert_eq!(summary.total_tokens, Some(12));
    assert_eq!(summary.duration_ms, Some(250.25));
    let json = serde_json::to_value(summary).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "id",
        "started_at",
        "pid",
        "uid",
        "user",
        "account",
        "unit",
        "exe",
        "cgroup",
        "container",
        "model",
        "endpoint",
        "status",
        "outcome",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "duration_ms",
        "masked",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);

    let detail = reader.exchange("ex-1").unwrap().unwrap();
    let [AuditRecord::Request(request), AuditRecord::Response(response), AuditRecord::Connection(connection)] =
        &records[..]
    else {
        unreachable!()
    };
    assert_eq!(&detail.request, request);
    assert_eq!(detail.response.as_ref(), Some(response));
    assert_eq!(detail.connection.as_ref(), Some(connection));
    assert_eq!((detail.request_seq, detail.response_seq), (1, Some(2)));
    assert_eq!(detail.outcome, "ok");
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["response"]["assembled"]["text"], "hello");
    assert!(reader.exchange("nope").unwrap().is_none());
}

#[test]
fn an_exchange_without_response_is_incomplete() {
    let (_dir, db) = store();
    let request = testing::request("ex-1", T0, identity(1, None));
    testing::write(&db, [AuditRecord::Request(request)]);
    let reader = AuditReader::open(&db).unwrap();
    let detail = reader.exchange("ex-1").unwrap().unwrap();
    assert_eq!(detail.outcome, INCOMPLETE);
    assert!(detail.response.is_none() && detail.connection.is_none());
    let json = serde_json::to_value(&detail).unwrap();
    assert!(json["response"].is_null() && json["response_seq"].is_null());
    let summary = &reader.list(&ExchangeFilter::default()).unwrap()[0];
    assert_eq!(summary.outcome, INCOMPLETE);
    assert_eq!(summary.total_tokens, None);
}

#[test]
fn a_summary_counts_the_values_masked_in_request_and_response() {
    let (_dir, db) = store();
    let mut masked = testing::request("ex-masked", T0, identity(1, None));
    masked.identity.container = Some("web-1".into());
    masked
        .policy
        .masked
        .entry("mask-pii".into())
        .or_default()
        .insert("EMAIL".into(), 2);
    let mut response = testing::response("ex-masked", T0 + SECOND, Outcome::Ok);
    response
        .masked
        .entry("mask-pii".into())
        .or_default()
        .insert("PHONE".into(), 1);
    let plain = testing::request("ex-plain", T0 + 2 * SECOND, identity(2, None));
    testing::write(
        &db,
        [
            AuditRecord::Request(masked),
            AuditRecord::Response(response),
            AuditRecord::Request(plain),
        ],
    );
    let reader = AuditReader::open(&db).unwrap();
    let rows = reader.list(&ExchangeFilter::default()).unwrap();
    let by_id = |id: &str| rows.iter().find(|row| row.id == id).unwrap();
    assert_eq!(by_id("ex-masked").masked, 3);
    assert_eq!(by_id("ex-masked").container.as_deref(), Some("web-1"));
    assert_eq!(by_id("ex-plain").masked, 0);
}

#[test]
fn every_filter_returns_exactly_the_matching_rows() {
    let (_dir, reader) = populated();
    let all = ["ex-5", "ex-4", "ex-3", "ex-2", "ex-1"];
    assert_eq!(ids(&reader, &ExchangeFilter::default()), all);
    let cases: Vec<(ExchangeFilter, Vec<&str>)> = vec![
        (
            filter(|f| f.since_us = Some(T0 + 2 * SECOND)),
            vec!["ex-5", "ex-4", "ex-3"],
        ),
        (
            filter(|f| f.until_us = Some(T0 + 2 * SECOND)),
            vec!["ex-2", "ex-1"],
        ),
        (
            filter(|f| (f.since_us, f.until_us) = (Some(T0 + SECOND), Some(T0 + 3 * SECOND))),
            vec!["ex-3", "ex-2"],
        ),
        (who_is("account:billing-*"), vec!["ex-2", "ex-1"]),
        (who_is("account:billing-a"), vec!["ex-1"]),
        (who_is("account:team[1]"), vec!["ex-5"]),
        (who_is("account:team?1]"), vec!["ex-5"]),
        (who_is("unit:a.service"), vec!["ex-5", "ex-1"]),
        (who_is("unit:*s.service"), vec!["ex-3"]),
        (who_is("user:alice"), vec!["ex-3", "ex-1"]),
        (who_is("user:*"), vec!["ex-5", "ex-3", "ex-2", "ex-1"]),
        (who_is("uid:1000"), vec!["ex-3", "ex-1"]),
        (who_is("uid:0"), vec!["ex-4"]),
        (who_is("cgroup:/system.slice/b*"), vec!["ex-2"]),
        (who_is("exe:/usr/bin/python3"), vec!["ex-1"]),
        (who_is("exe:/usr/bin/python3*"), vec!["ex-3", "ex-1"]),
        (who_is("pid:14"), vec!["ex-4"]),
        (who_is("sa:prod/billing-?"), vec!["ex-2", "ex-1"]),
        (model("gpt-4o"), vec!["ex-5", "ex-1"]),
        (model("gpt-4o*"), vec!["ex-5", "ex-2", "ex-1"]),
        (model("GPT*"), vec![]),
        (
            filter(|f| f.endpoint = Some("chat.completions".into())),
            vec!["ex-5", "ex-1"],
        ),
        (
            filter(|f| f.endpoint = Some("responses".into())),
            vec!["ex-2"],
        ),
        (outcome("ok"), vec!["ex-5", "ex-1"]),
        (outcome("client_aborted"), vec!["ex-2"]),
        (outcome("upstream_error"), vec!["ex-4"]),
        (outcome("incomplete"), vec!["ex-3"]),
        (outcome("timeout"), vec![]),
        (filter(|f| f.limit = Some(2)), vec!["ex-5", "ex-4"]),
        (filter(|f| f.limit = Some(0)), vec![]),
        (
            filter(|f| {
                f.identity = Some(IdentitySelector::parse("user:alice").unwrap());
                f.model = Some("gpt*".into());
            }),
            vec!["ex-1"],
        ),
    ];
    for (filter, expected) in &cases {
        assert_eq!(&ids(&reader, filter), expected, "{filter:?}");
    }
    // The same answers when every glob is checked while walking the time index instead.
    let db = Path::new(reader.conn.path().unwrap());
    let walking = AuditReader {
        glob_probe_cap: 1,
        ..AuditReader::open(db).unwrap()
    };
    for (filter, expected) in &cases {
        assert_eq!(&ids(&walking, filter), expected, "{filter:?}");
    }

    // The SQL agrees with the in-memory matching policies will use.
    for selector in ["account:*-?", "user:?o*", "exe:*3*", "cgroup:*", "sa:*"] {
        let parsed = IdentitySelector::parse(selector).unwrap();
        let fixtures = fixtures();
        let matching = fixtures
            .iter()
            .rev()
            .filter(|f| parsed.matches(&f.identity));
        let expected: Vec<&str> = matching.map(|f| f.id).collect();
        assert_eq!(ids(&reader, &who_is(selector)), expected, "{selector}");
    }

    let err = reader.list(&outcome("fine")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("valid outcomes are ok, upstream_error"),
        "{message}"
    );
}

#[test]
fn export_streams_oldest_first_with_filters() {
    let (_dir, reader) = populated();
    let mut seen = Vec::new();
    let since = filter(|f| f.since_us = Some(T0 + SECOND));
    reader
        .for_each_exchange(&since, |detail| {
            seen.push(format!("{} {}", detail.id, detail.outcome));
            Ok(())
        })
        .unwrap();
    let expected = [
        "ex-2 client_aborted",
        "ex-3 incomplete",
        "ex-4 upstream_error",
        "ex-5 ok",
    ];
    assert_eq!(seen, expected);

    let mut calls = 0;
    let stop = reader.for_each_exchange(&ExchangeFilter::default(), |_| {
        calls += 1;
        Err(AuditError::InvalidFilter("stop".into()))
    });
    assert!(stop.is_err());
    assert_eq!(calls, 1);
}

#[test]
fn time_identity_and_model_filters_use_indexes() {
    let (_dir, reader) = populated();
    let plan_with = |filter: &ExchangeFilter, cap: i64| -> String {
        let (sql, values) = select_sql(
            &reader.conn,
            SUMMARY_COLUMNS,
            filter,
            Order::NewestFirst,
            cap,
        )
        .unwrap();
        let mut statement = reader
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = statement
            .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
            .unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
    };
    let cases = [
        (
            filter(|f| (f.since_us, f.until_us) = (Some(T0), Some(T0 + SECOND))),
            "exchanges_started",
        ),
        (who_is("account:billing-a"), "exchanges_account"),
        (who_is("account:billing-*"), "exchanges_account"),
        (
            filter(|f| {
                f.since_us = Some(T0);
                f.identity = Some(IdentitySelector::parse("unit:a.service").unwrap());
            }),
            "exchanges_unit",
        ),
        (who_is("uid:1000"), "exchanges_uid"),
        (who_is("pid:14"), "exchanges_pid"),
        (who_is("exe:/usr/bin/python3"), "exchanges_exe"),
        (who_is("user:alice"), "exchanges_user"),
        (who_is("cgroup:/system.slice/a.service"), "exchanges_cgroup"),
        (model("gpt-4o"), "exchanges_model"),
        (model("gpt-4o*"), "exchanges_model"),
        (outcome("incomplete"), "exchanges_outcome"),
        (
            filter(|f| f.endpoint = Some("models".into())),
            "exchanges_endpoint",
        ),
        (filter(|f| f.limit = Some(50)), "exchanges_started"),
    ];
    for (filter, index) in cases {
        let plan = plan_with(&filter, GLOB_PROBE_CAP);
        assert!(
            plan.contains(&format!("USING INDEX {index}")),
            "{filter:?}: {plan}"
        );
        // Exact matches read rows already in started_us order: LIMIT stops early, nothing sorted.
        let exact = !filter.model.as_deref().unwrap_or("").contains('*')
            && !filter
                .identity
                .as_ref()
                .is_some_and(|s| s.to_string().contains('*'));
        assert!(
            !exact || !plan.contains("TEMP B-TREE"),
            "{filter:?}: {plan}"
        );
    }

    // A glob matching many rows: walk the time index newest first and stop at the limit.
    let broad = ExchangeFilter {
        limit: Some(50),
        ..who_is("account:billing-*")
    };
    let plan = plan_with(&broad, 1);
    assert!(plan.contains("USING INDEX exchanges_started"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    assert_eq!(format_timestamp_us(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(format_timestamp_us(T0 + 6), "2023-11-14T22:13:20.000006Z");
}

#[test]
fn export_pages_oldest_first_without_holding_a_snapshot_while_the_consumer_runs() {
    let (_dir, db) = store();
    // Several exchanges share a start time: the rowid orders them, across page boundaries too.
    let starts = [0, 1, 1, 1, 2, 3, 3];
    let mut records = Vec::new();
    for (n, offset) in (1..).zip(starts) {
        let id = format!("ex-{n}");
        let at = T0 + offset * SECOND;
        records.push(AuditRecord::Request(testing::request(
            &id,
            at,
            identity(n, None),
        )));
        if n != 2 && n != 4 {
            records.push(AuditRecord::Response(testing::response(
                &id,
                at + 1,
                Outcome::Ok,
            )));
        }
    }
    testing::write(&db, records);
    let reader = AuditReader {
        export_page: 2,
        ..AuditReader::open(&db).unwrap()
    };
    let export = |filter: &ExchangeFilter| {
        let mut seen = Vec::new();
        reader
            .for_each_exchange(filter, |detail| {
                seen.push(detail.id);
                Ok(())
            })
            .unwrap();
        seen
    };
    let all = ["ex-1", "ex-2", "ex-3", "ex-4", "ex-5", "ex-6", "ex-7"];
    assert_eq!(export(&ExchangeFilter::default()), all);
    assert_eq!(export(&filter(|f| f.limit = Some(5))), all[..5]);
    assert_eq!(export(&filter(|f| f.limit = Some(4))), all[..4]);
    assert_eq!(
        export(&filter(|f| f.since_us = Some(T0 + SECOND))),
        all[1..]
    );
    assert_eq!(export(&outcome("incomplete")), ["ex-2", "ex-4"]);
    assert_eq!(export(&who_is("pid:6")), ["ex-6"]);

    // While the consumer holds an exchange, the daemon commits and the WAL can be checkpointed
    // all the way (a read snapshot held across the export would keep it from being truncated).
    let writer = AuditWriter::start(&db, WriterOptions::default()).unwrap();
    let operator = testing::attacker(&db);
    let mut seen = Vec::new();
    reader
        .for_each_exchange(&outcome("incomplete"), |detail| {
            if detail.id == "ex-2" {
                // ex-4 was already read into the page as incomplete; now it completes.
                let response = testing::response("ex-4", T0 + 2 * SECOND, Outcome::Ok);
                writer
                    .commit_blocking(AuditRecord::Response(response))
                    .unwrap();
                let busy: i64 = operator
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                    .unwrap();
                assert_eq!(busy, 0, "the export held a snapshot");
            }
            seen.push(detail.id);
            Ok(())
        })
        .unwrap();
    // The filter still holds for what changed after the page was read.
    assert_eq!(seen, ["ex-2"]);

    // An exchange committed during the export is reached by a later page.
    let mut seen = Vec::new();
    reader
        .for_each_exchange(&ExchangeFilter::default(), |detail| {
            if detail.id == "ex-1" {
                let late = testing::request("ex-late", T0 + 9 * SECOND, identity(9, None));
                writer.commit_blocking(AuditRecord::Request(late)).unwrap();
            }
            seen.push(detail.id);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("ex-late"));
    assert_eq!(seen.len(), all.len() + 1);
    writer.shutdown();
}

#[test]
fn export_pages_resume_on_the_time_index() {
    let (_dir, reader) = populated();
    let pages = Pages::new(
        &reader.conn,
        "id, started_us, exchanges.rowid",
        &ExchangeFilter::default(),
        GLOB_PROBE_CAP,
    )
    .unwrap();
    let (sql, values) = pages.page(Some((T0, 1)), 2);
    let plan: Vec<String> = reader
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(params_from_iter(values), |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("; ");
    assert!(
        plan.contains("USING INDEX exchanges_started (started_us>?"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}
