use super::*;
use crate::sinks::severity::Severity;
use crate::sinks::{test_events, EventClass};

fn header() -> Header {
    Header {
        facility: 16,
        hostname: "host-1".to_owned(),
        app_name: "warden".to_owned(),
        procid: 77,
    }
}

#[test]
fn a_response_is_one_rfc5424_line_with_sd_and_the_event_json() {
    let event = test_events::response_event();
    let line = message(&header(), &event);
    let expected_head = "<134>1 2023-11-14T22:13:20.250000Z host-1 warden 77 response \
        [warden@32473 seq=\"42\" class=\"exchanges\" exchange_id=\"ex_01\" user=\"alice\" \
        model=\"gpt-4o-mini\" outcome=\"ok\"] ";
    assert!(line.starts_with(expected_head), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&line[expected_head.len()..]).expect("MSG is the event JSON");
    assert_eq!(json["seq"], 42);
    assert_eq!(json["exchange"]["input_tokens"], 12);
    assert!(!line.contains('\n'));
}

#[test]
fn request_events_take_user_and_model_from_the_record() {
    let sd = structured_data(&test_events::request_event());
    assert_eq!(
        sd,
        "[warden@32473 seq=\"41\" class=\"exchanges\" exchange_id=\"ex_01\" user=\"alice\" model=\"gpt-4o-mini\"]"
    );
}

#[test]
fn param_values_escape_quote_backslash_and_bracket() {
    let mut out = String::new();
    escape_param_value(r#"a"b\c]d[e"#, &mut out);
    assert_eq!(out, r#"a\"b\\c\]d[e"#);

    let mut event = test_events::response_event();
    if let Some(summary) = event.exchange.as_mut() {
        summary.user = Some("eve\"] [x@1 y=\"z".to_owned());
    }
    let sd = structured_data(&event);
    assert!(sd.contains(r#"user="eve\"\] [x@1 y=\"z""#), "{sd}");
    assert_eq!(sd.matches(']').count() - sd.matches("\\]").count(), 1);
}

#[test]
fn severity_alert_warning_denial_notice_else_info() {
    assert_eq!(
        severity(&test_events::governance_event(EventClass::Alerts, "alert")),
        Severity::Warning
    );
    let mut denied = test_events::response_event();
    if let Some(summary) = denied.exchange.as_mut() {
        summary.outcome = "denied".to_owned();
    }
    assert_eq!(severity(&denied), Severity::Notice);
    let line = message(&header(), &denied);
    assert!(line.starts_with("<133>1 "), "{line}");
    assert_eq!(
        severity(&test_events::response_event()),
        Severity::Informational
    );
    assert_eq!(
        severity(&test_events::governance_event(EventClass::Admin, "revoked")),
        Severity::Informational
    );
}

#[test]
fn header_fields_are_printable_ascii_and_bounded() {
    let odd = Header::new(3, "", "war den");
    assert_eq!(odd.hostname, "-");
    assert_eq!(odd.app_name, "war_den");
    let mut event = test_events::governance_event(EventClass::Approvals, "approval_decided");
    event.name = "x".repeat(40);
    let line = message(&odd, &event);
    assert!(line.starts_with("<30>1 "), "{line}");
    assert!(line.contains(&format!(" {} [", "x".repeat(32))), "{line}");
}

#[test]
fn octet_counting_prefixes_the_byte_length() {
    assert_eq!(octet_counted("<134>1 é"), b"9 <134>1 \xc3\xa9".to_vec());
}

#[test]
fn datagrams_are_cut_at_a_character_boundary() {
    let message = format!("{}é", "a".repeat(9));
    assert_eq!(datagram(&message, 100), message.as_bytes());
    assert_eq!(datagram(&message, 10), b"aaaaaaaaa");
    assert_eq!(datagram(&message, 11), message.as_bytes());
}
