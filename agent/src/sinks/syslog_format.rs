//! RFC 5424 messages for sink events, and their framing: octet counting for streams, a cut for datagrams.
use super::{
    severity::{outcome, severity},
    SinkEvent,
};
use crate::audit::format_timestamp_us;

/// Warden's structured-data ID (`name@private enterprise number`, RFC 5424 §7.2.2).
pub const SD_ID: &str = "warden@32473";

/// What the header needs besides the event: fixed for the life of a sink.
#[derive(Clone, Debug)]
pub struct Header {
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: u32,
}

impl Header {
    pub fn new(facility: u8, hostname: &str, app_name: &str) -> Header {
        Header {
            facility,
            hostname: header_field(hostname, 255),
            app_name: header_field(app_name, 48),
            procid: std::process::id(),
        }
    }
}

/// One event as an RFC 5424 message (no BOM: MSG is the event's JSON, which is plain UTF-8).
pub fn message(header: &Header, event: &SinkEvent) -> String {
    let pri = u16::from(header.facility) * 8 + severity(event) as u16;
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    format!(
        "<{pri}>1 {} {} {} {} {} {} {json}",
        format_timestamp_us(event.at_us),
        header.hostname,
        header.app_name,
        header.procid,
        header_field(&event.name, 32),
        structured_data(event),
    )
}

/// `[warden@32473 seq="…" class="…" exchange_id="…" user="…" model="…" outcome="…"]`; the
/// parameters an event has no value for are left out.
pub fn structured_data(event: &SinkEvent) -> String {
    let mut sd = format!("[{SD_ID} seq=\"{}\"", event.seq);
    let class = serde_json::to_value(event.class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned));
    let params = [
        ("class", class.as_deref()),
        ("exchange_id", event.exchange_id.as_deref()),
        ("user", user(event)),
        ("model", model(event)),
        ("outcome", outcome(event)),
    ];
    for (name, value) in params {
        if let Some(value) = value {
            sd.push(' ');
            sd.push_str(name);
            sd.push_str("=\"");
            escape_param_value(value, &mut sd);
            sd.push('"');
        }
    }
    sd.push(']');
    sd
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped with a backslash inside a PARAM-VALUE.
pub fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A header field is printable ASCII without spaces, of bounded length; anything else becomes `_`,
/// and an empty one the NILVALUE.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

fn user(event: &SinkEvent) -> Option<&str> {
    event
        .exchange
        .as_ref()
        .and_then(|e| e.user.as_deref())
        .or_else(|| event.record.pointer("/identity/user")?.as_str())
}

fn model(event: &SinkEvent) -> Option<&str> {
    event
        .exchange
        .as_ref()
        .and_then(|e| e.model.as_deref())
        .or_else(|| event.record.get("model")?.as_str())
}

/// RFC 6587 §3.4.1 / RFC 5425 §4.3: `MSG-LEN SP SYSLOG-MSG`, the length in bytes.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

/// A datagram holds at most `max` bytes: longer messages are cut at a character boundary, so
/// what arrives is still UTF-8 (the JSON in MSG is then incomplete).
pub fn datagram(message: &str, max: usize) -> &[u8] {
    if message.len() <= max {
        return message.as_bytes();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

#[cfg(test)]
#[path = "syslog_format_tests.rs"]
mod tests;
