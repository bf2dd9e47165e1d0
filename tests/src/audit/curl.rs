//! curl command lines for the audit tests: any model, a marker in the prompt, streams that curl
//! gives up on, and GETs, all with [`super::FAKE_KEY`].

use super::FAKE_KEY;

fn base(url: &str, max_time_secs: u32) -> Vec<String> {
    let mut argv: Vec<String> = ["curl", "-sS", "--max-time"].map(str::to_owned).to_vec();
    argv.push(max_time_secs.to_string());
    // The status goes to stderr so stdout stays the body (`crate::curl::http_code` reads it).
    argv.extend([
        "-w".to_owned(),
        "%{stderr}http_code=%{http_code}\\n".to_owned(),
    ]);
    argv.push(url.to_owned());
    argv.extend(["-H".to_owned(), format!("Authorization: Bearer {FAKE_KEY}")]);
    argv
}

/// The chat request body for `model` with the user message `content`.
pub fn chat_body(model: &str, content: &str, stream: bool) -> String {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
    });
    if stream {
        body["stream"] = true.into();
    }
    body.to_string()
}

fn post(path: &str, body: String, max_time_secs: u32) -> Vec<String> {
    let mut argv = base(&format!("https://api.openai.com{path}"), max_time_secs);
    argv.extend(["-N", "-H", "content-type: application/json", "-d"].map(str::to_owned));
    argv.push(body);
    argv
}

/// `POST /v1/chat/completions` (not streamed).
pub fn chat(model: &str, content: &str) -> Vec<String> {
    post("/v1/chat/completions", chat_body(model, content, false), 20)
}

/// `POST /v1/chat/completions` with `"stream": true`; curl gives up after `max_time_secs`.
pub fn stream_chat(model: &str, content: &str, max_time_secs: u32) -> Vec<String> {
    post(
        "/v1/chat/completions",
        chat_body(model, content, true),
        max_time_secs,
    )
}

/// `GET https://api.openai.com{path}`.
pub fn get(path: &str) -> Vec<String> {
    base(&format!("https://api.openai.com{path}"), 20)
}
