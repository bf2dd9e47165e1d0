use http_body_util::BodyExt;

use super::*;

/// A body that yields its pieces one frame each.
struct Pieces(VecDeque<Bytes>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }
}

const WITH_USAGE: [&str; 4] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}],\"id\":\"c1\",\"usage\":null}\n\n",
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"c1\",\"usage\":null}\n\n",
    "data: {\"choices\":[],\"id\":\"c1\",\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":9,\"total_tokens\":10}}\n\n",
    "data: [DONE]\n\n",
];

const WITHOUT_USAGE: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}],\"id\":\"c1\"}\n\n",
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"c1\"}\n\n",
    "data: [DONE]\n\n",
);

/// The stream through the filter, fed in pieces of `piece` bytes.
async fn filtered(stream: &str, piece: usize) -> String {
    let pieces = stream
        .as_bytes()
        .chunks(piece)
        .map(Bytes::copy_from_slice)
        .collect();
    let body = WithoutInjectedUsage::new(Pieces(pieces));
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_agent_gets_the_stream_it_would_have_had_without_include_usage() {
    let stream = WITH_USAGE.concat();
    for piece in [1, 3, 7, 64, stream.len()] {
        assert_eq!(
            filtered(&stream, piece).await,
            WITHOUT_USAGE,
            "pieces of {piece}"
        );
    }
}

#[tokio::test]
async fn other_events_and_an_unterminated_tail_pass_untouched() {
    let stream = ": keep-alive\n\nevent: x\r\ndata: {\"usage\":{\"a\":1},\"choices\":[1]}\r\n\r\ndata: {\"a\":\"\\\"usage\\\":null\"}";
    assert_eq!(filtered(stream, 5).await, stream);
}

#[test]
fn a_null_usage_member_goes_with_one_comma_wherever_it_is() {
    let cut = |json: &str| {
        let (from, to) = null_usage_member(json.as_bytes()).unwrap();
        format!("{}{}", &json[..from], &json[to..])
    };
    assert_eq!(cut(r#"{"a":1,"usage":null}"#), r#"{"a":1}"#);
    assert_eq!(cut(r#"{"usage": null, "a":1}"#), r#"{ "a":1}"#);
    assert_eq!(cut(r#"{"usage":null}"#), r#"{}"#);
    // Only at the top level, and never inside a string.
    assert!(null_usage_member(br#"{"x":{"usage":null}}"#).is_none());
    assert!(null_usage_member(br#"{"x":"\"usage\":null"}"#).is_none());
    assert!(null_usage_member(br#"{"usage":{"t":1}}"#).is_none());
}

#[test]
fn the_request_asks_for_usage_keeping_other_stream_options() {
    let mut value = serde_json::json!({"model": "m", "stream": true, "stream_options": {"x": 1}});
    assert!(request_usage(&mut value));
    assert_eq!(value["stream_options"]["include_usage"], true);
    assert_eq!(value["stream_options"]["x"], 1);
    let mut not_an_object = serde_json::json!([1]);
    assert!(!request_usage(&mut not_an_object));
    assert_eq!(not_an_object, serde_json::json!([1]));
}
