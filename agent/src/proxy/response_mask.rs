//! Mask responses before the agent sees them: whole JSON bodies at once, SSE streams event by
//! event (holding back only text that could still complete a match).
use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use crate::{
    openai::{
        endpoint::EndpointKind,
        sse::{SseEvent, SseParser},
    },
    policy::{
        active::CompiledPolicy,
        mask::MaskCounts,
        prompt::mask_response,
        stream_mask::{mask_chat_chunk, mask_responses_event, ChunkMaskers},
    },
};

/// Per mask rule, what was masked in the response; shared with the exchange's audit record.
pub type SharedMaskCounts = Arc<Mutex<BTreeMap<String, MaskCounts>>>;

/// The mask rules that apply to one response.
pub struct ResponseMasks {
    pub policy: Arc<CompiledPolicy>,
    /// Rule names, in policy order.
    pub rules: Vec<String>,
    pub counts: SharedMaskCounts,
}

impl ResponseMasks {
    fn add(&self, rule: &str, counts: &MaskCounts) {
        if counts.is_empty() {
            return;
        }
        let mut all = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.entry(rule.to_string()).or_default().merge(counts);
    }

    /// A whole JSON body, masked (re-serialized), or the body itself when nothing was masked;
    /// None when it is not JSON.
    pub fn mask_whole(&self, endpoint: EndpointKind, body: Bytes) -> Option<Bytes> {
        let mut value: Value = serde_json::from_slice(&body).ok()?;
        let mut changed = false;
        for rule in &self.rules {
            let Some(compiled) = self.policy.mask(rule) else {
                continue;
            };
            let mut counts = MaskCounts::default();
            changed |= mask_response(endpoint, &mut value, &compiled.masker, &mut counts);
            self.add(rule, &counts);
        }
        if !changed {
            return Some(body);
        }
        serde_json::to_vec(&value).ok().map(Bytes::from)
    }

    /// A stream, masked as it goes.
    pub fn mask_stream<B>(self, endpoint: EndpointKind, inner: B) -> MaskedSse<B> {
        let stages = self
            .rules
            .iter()
            .filter_map(|rule| {
                let prefixes = self.policy.mask(rule)?.stream.clone()?;
                Some((
                    rule.clone(),
                    ChunkMaskers::new(prefixes),
                    MaskCounts::default(),
                ))
            })
            .collect();
        MaskedSse {
            inner,
            endpoint,
            masks: self,
            parser: SseParser::default(),
            parsed: Vec::new(),
            stages,
            out: BytesMut::new(),
            ended: false,
        }
    }
}

/// An SSE body whose text deltas are masked; framing is rewritten event by event.
pub struct MaskedSse<B> {
    inner: B,
    endpoint: EndpointKind,
    masks: ResponseMasks,
    parser: SseParser,
    parsed: Vec<SseEvent>,
    /// One streaming masker set per rule, applied in order, with what each masked so far.
    stages: Vec<(String, ChunkMaskers, MaskCounts)>,
    out: BytesMut,
    ended: bool,
}

impl<B> MaskedSse<B> {
    fn rewrite(&mut self, event: SseEvent) {
        if event.data == "[DONE]" {
            // Whatever is still held belongs before the end of the stream.
            for value in self.flush() {
                self.emit(None, &value);
            }
            self.out.extend_from_slice(b"data: [DONE]\n\n");
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
            // Not JSON: mask it as plain text with every rule, after what is still held.
            for value in self.flush() {
                self.emit(None, &value);
            }
            let mut event = event;
            for (rule, _, counts) in &mut self.stages {
                if let Some(compiled) = self.masks.policy.mask(rule) {
                    event.data = compiled.masker.mask(&event.data, counts).into_owned();
                }
            }
            self.emit_raw(&event);
            return;
        };
        let mut events = vec![value];
        for (_, maskers, counts) in &mut self.stages {
            let mut next = Vec::with_capacity(events.len());
            for mut value in events {
                if self.endpoint == EndpointKind::Responses {
                    next.extend(mask_responses_event(&mut value, maskers, counts));
                } else {
                    mask_chat_chunk(&mut value, maskers, counts);
                }
                next.push(value);
            }
            events = next;
        }
        for value in &events {
            let name = if self.endpoint == EndpointKind::Responses {
                value
                    .get("type")
                    .and_then(Value::as_str)
                    .or(event.event.as_deref())
            } else {
                event.event.as_deref()
            };
            self.emit(name, value);
        }
    }

    /// Held text of every stage, as events to send before the stream ends.
    fn flush(&mut self) -> Vec<Value> {
        let mut pending: Vec<Value> = Vec::new();
        for (_, maskers, counts) in &mut self.stages {
            // Events from earlier stages pass through this one before its own held text.
            let mut next = Vec::new();
            for mut value in pending {
                if self.endpoint == EndpointKind::Responses {
                    next.extend(mask_responses_event(&mut value, maskers, counts));
                } else {
                    mask_chat_chunk(&mut value, maskers, counts);
                }
                next.push(value);
            }
            next.extend(maskers.flush(counts));
            pending = next;
        }
        pending
    }

    fn emit(&mut self, name: Option<&str>, value: &Value) {
        if let Some(name) = name {
            self.out.extend_from_slice(b"event: ");
            self.out.extend_from_slice(name.as_bytes());
            self.out.extend_from_slice(b"\n");
        }
        self.out.extend_from_slice(b"data: ");
        // Serializing a Value cannot fail.
        if let Ok(json) = serde_json::to_vec(value) {
            self.out.extend_from_slice(&json);
        }
        self.out.extend_from_slice(b"\n\n");
    }

    fn emit_raw(&mut self, event: &SseEvent) {
        if let Some(name) = &event.event {
            self.out
                .extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        for line in event.data.split('\n') {
            self.out.extend_from_slice(b"data: ");
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\n");
        }
        self.out.extend_from_slice(b"\n");
    }

    fn publish_counts(&mut self) {
        for (rule, _, counts) in &mut self.stages {
            let taken = std::mem::take(counts);
            self.masks.add(rule, &taken);
        }
    }
}

impl<B> Body for MaskedSse<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if !self.out.is_empty() {
                let data = self.out.split().freeze();
                self.publish_counts();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let this = &mut *self;
                        this.parser.feed(&data, &mut this.parsed);
                        // Taken out and put back so its allocation serves every frame.
                        let mut events = std::mem::take(&mut this.parsed);
                        for event in events.drain(..) {
                            this.rewrite(event);
                        }
                        this.parsed = events;
                    }
                    // Trailers pass through unchanged.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    let this = &mut *self;
                    this.ended = true;
                    // An unterminated last event is not dispatched (as browsers do): it would
                    // otherwise turn a cut fragment into a complete event.
                    // A stream cut before [DONE]: release what is held, masked.
                    for value in this.flush() {
                        this.emit(None, &value);
                    }
                    this.publish_counts();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http_body_util::BodyExt;

    use super::*;
    use crate::policy::{load::parse_rules, Policy};

    /// Two mask rules applied in order: the recognizer's, then a pattern of its own.
    const TWO_RULES: &str = r#"
[[rule]]
name = "pii"
action = "mask"
direction = "response"
recognizers = ["email"]

[[rule]]
name = "tickets"
action = "mask"
direction = "response"
patterns = [{ name = "ticket", regex = "TCK-\\d{5}" }]
"#;

    fn masks() -> ResponseMasks {
        let rules = parse_rules(TWO_RULES, Path::new("test.toml")).unwrap();
        let policy = CompiledPolicy::compile(Policy {
            rules,
            limits: Vec::new(),
            files: Vec::new(),
        })
        .unwrap();
        ResponseMasks {
            policy: Arc::new(policy),
            rules: vec!["pii".to_string(), "tickets".to_string()],
            counts: SharedMaskCounts::default(),
        }
    }

    fn chunk(content: &str) -> String {
        let event = serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}}],
        });
        format!("data: {event}\n\n")
    }

    /// A stream through both rules, ending without `[DONE]` (cut), one event not JSON.
    #[tokio::test]
    async fn every_rule_masks_json_and_plain_events_and_a_cut_stream_releases_what_it_held() {
        let masks = masks();
        let counts = Arc::clone(&masks.counts);
        let upstream = [
            chunk("write to alice@example.com about "),
            chunk("TCK-12345 today"),
            "data: plain bob@example.com and TCK-54321\n\n".to_string(),
            chunk("cc carol@example."),
            chunk("com"),
        ]
        .concat();
        let inner = http_body_util::Full::new(Bytes::from(upstream));
        let masked = masks.mask_stream(EndpointKind::ChatCompletions, inner);
        let out = masked.collect().await.unwrap().to_bytes();
        let out = String::from_utf8(out.to_vec()).unwrap();
        for secret in [
            "alice@example.com",
            "bob@example.com",
            "carol@example",
            "TCK-12345",
            "TCK-54321",
        ] {
            assert!(!out.contains(secret), "{secret} passed unmasked:\n{out}");
        }
        assert!(
            out.contains("data: plain [EMAIL] and [TICKET]\n\n"),
            "{out}"
        );
        // Held back while it could still grow, then released masked when the stream was cut.
        assert!(out.contains(r#""content":"[EMAIL]""#), "{out}");
        let counts = counts.lock().unwrap();
        assert_eq!(counts["pii"].total(), 3, "{counts:?}");
        assert_eq!(counts["tickets"].total(), 2, "{counts:?}");
    }
}
