use std::process::Command;

use super::*;

/// Every value of `attribute="…"` in the page, in order.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    let mut values = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&needle) {
        let after = &rest[start + needle.len()..];
        let end = after.find('"').expect("an attribute value is closed");
        values.push(&after[..end]);
        rest = &after[end..];
    }
    values
}

/// The opening tags of the page (`<name attributes…>`), lowercased.
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .filter(|chunk| !chunk.starts_with('/') && !chunk.starts_with('!'))
        .map(|chunk| chunk.split('>').next().unwrap_or_default().to_lowercase())
        .collect()
}

#[test]
fn every_file_the_page_refers_to_is_served() {
    let mut references = attribute_values(INDEX_HTML, "src");
    references.extend(attribute_values(INDEX_HTML, "href"));
    let files: Vec<&str> = references
        .into_iter()
        .filter(|value| !value.starts_with('#'))
        .collect();
    assert!(
        files.contains(&"/assets/app.js") && files.contains(&"/assets/app.css"),
        "the page loads the script and the stylesheet: {files:?}"
    );
    for file in files {
        assert!(
            asset(file).is_some(),
            "{file} is referred to but not served"
        );
    }
}

#[test]
fn the_page_has_no_inline_script_style_or_event_handler() {
    for tag in tags(INDEX_HTML) {
        let name = tag.split_whitespace().next().unwrap_or_default();
        assert!(
            name != "script" || tag.contains(" src="),
            "inline script: <{tag}>"
        );
        assert_ne!(name, "style", "inline stylesheet: <{tag}>");
        for attribute in tag.split_whitespace().skip(1) {
            assert!(
                !attribute.starts_with("style=") && !attribute.starts_with("on"),
                "inline style or handler in <{tag}>"
            );
        }
    }
}

#[test]
fn the_script_never_writes_html_or_runs_text_as_code() {
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "eval(",
        "new Function",
        "document.write",
        "javascript:",
    ] {
        assert!(
            !APP_JS.contains(forbidden),
            "app.js uses {forbidden}: recorded text must go in as text nodes"
        );
    }
}

#[test]
fn the_script_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/console/app.js");
    let output = match Command::new("node").arg("--check").arg(path).output() {
        Ok(output) => output,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: cannot run node ({error}); `cargo xtask test` installs it");
            return;
        }
        Err(error) => panic!("node is needed under CI=true: {error}"),
    };
    assert!(
        output.status.success(),
        "node --check app.js: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn only_the_console_files_are_assets() {
    assert_eq!(asset("/").unwrap(), asset("/index.html").unwrap());
    assert_eq!(
        asset("/assets/app.js").unwrap().content_type,
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        asset("/assets/app.css").unwrap().content_type,
        "text/css; charset=utf-8"
    );
    for path in [
        "",
        "/assets/",
        "/assets/../Cargo.toml",
        "/assets/mod.rs",
        "/api/v1/me",
    ] {
        assert_eq!(asset(path), None, "{path}");
    }
}
