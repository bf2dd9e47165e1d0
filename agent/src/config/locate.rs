//! Maps between key paths (`upstream.override[0].address`) and line numbers in a TOML file's text
//! (the config, and policy files).
use std::{fmt, ops::Range, path::Path};

use super::{ConfigError, Location};

/// A key's place in the document: `upstream.override[0].address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// Removes the key at this path from `doc`; false when there is none. Only keys are removed,
    /// never array elements, so the paths of the keys left keep naming the same places.
    pub(crate) fn remove_from(&self, doc: &mut toml_edit::DocumentMut) -> bool {
        remove_at(NodeMut::Table(doc.as_table_mut()), &self.0)
    }

    /// How the table holding this key is written: `[proxy]`, `[[account]]`, or the top level.
    fn parent_table(&self) -> String {
        let parent = &self.0[..self.0.len().saturating_sub(1)];
        let array = matches!(parent.last(), Some(Segment::Index(_)));
        let names: Vec<&str> = parent
            .iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Index(_) => None,
            })
            .collect();
        match (names.is_empty(), array) {
            (true, _) => "the top level".to_string(),
            (false, true) => format!("[[{}]]", names.join(".")),
            (false, false) => format!("[{}]", names.join(".")),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A node of a mutable document, as [`Node`] is of a parsed one.
enum NodeMut<'a> {
    Item(&'a mut toml_edit::Item),
    Table(&'a mut toml_edit::Table),
    Value(&'a mut toml_edit::Value),
}

impl<'a> NodeMut<'a> {
    fn table_like(self) -> Option<&'a mut dyn toml_edit::TableLike> {
        match self {
            NodeMut::Item(item) => item.as_table_like_mut(),
            NodeMut::Table(table) => Some(table),
            NodeMut::Value(value) => value
                .as_inline_table_mut()
                .map(|t| t as &mut dyn toml_edit::TableLike),
        }
    }

    fn element(self, index: usize) -> Option<NodeMut<'a>> {
        match self {
            NodeMut::Item(toml_edit::Item::ArrayOfTables(tables)) => {
                tables.get_mut(index).map(NodeMut::Table)
            }
            NodeMut::Item(toml_edit::Item::Value(value)) | NodeMut::Value(value) => {
                value.as_array_mut()?.get_mut(index).map(NodeMut::Value)
            }
            _ => None,
        }
    }
}

fn remove_at(node: NodeMut<'_>, path: &[Segment]) -> bool {
    match path {
        [] => false,
        [Segment::Key(key)] => node
            .table_like()
            .is_some_and(|table| table.remove(key).is_some()),
        [Segment::Key(key), rest @ ..] => match node.table_like().and_then(|t| t.get_mut(key)) {
            Some(item) => remove_at(NodeMut::Item(item), rest),
            None => false,
        },
        [Segment::Index(index), rest @ ..] => match node.element(*index) {
            Some(child) => remove_at(child, rest),
            None => false,
        },
    }
}

/// Maps between key paths and source positions using toml_edit's spans.
pub(crate) struct Locator<'a> {
    text: &'a str,
    doc: &'a toml_edit::ImDocument<&'a str>,
    file: &'a Path,
}

/// A node of the document while walking it: tables of `[[x]]` arrays and array elements are not Items.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value
                .as_inline_table()
                .map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(tables)) => {
                tables.get(index).map(Node::Table)
            }
            Node::Item(toml_edit::Item::Value(value)) | Node::Value(value) => {
                value.as_array()?.get(index).map(Node::Value)
            }
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    /// Direct children with their paths and the spans that point at them (key, then value).
    fn children(self, at: &KeyPath) -> Vec<(KeyPath, Node<'a>, Option<Range<usize>>)> {
        if let Some(table) = self.table_like() {
            return table
                .iter()
                .filter_map(|(name, _)| table.get_key_value(name))
                .map(|(key, item)| (at.key(key.get()), Node::Item(item), key.span()))
                .collect();
        }
        (0..)
            .map_while(|i| self.element(i).map(|node| (at.index(i), node, None)))
            .collect()
    }
}

impl<'a> Locator<'a> {
    /// `doc` must be `text` parsed by toml_edit, so that its spans index into `text`.
    pub(crate) fn new(
        text: &'a str,
        doc: &'a toml_edit::ImDocument<&'a str>,
        file: &'a Path,
    ) -> Self {
        Locator { text, doc, file }
    }

    pub(crate) fn location(&self, span: Option<Range<usize>>) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: span.map(|span| line_of(self.text, span.start)),
        }
    }

    /// The span of the key (or, for array elements, the value) at `path`; None when absent.
    /// Where the key (or, for array elements, the value) at `path` is; no line when it is absent.
    pub(crate) fn location_of(&self, path: &KeyPath) -> Location {
        self.location(self.span_of(path))
    }

    pub(crate) fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut node = Node::Table(self.doc.as_table());
        let mut span = None;
        for segment in &path.0 {
            match segment {
                Segment::Key(k) => {
                    let (key, item) = node.table_like()?.get_key_value(k)?;
                    node = Node::Item(item);
                    span = key.span().or_else(|| item.span());
                }
                Segment::Index(i) => {
                    node = node.element(*i)?;
                    span = node.span();
                }
            }
        }
        span
    }

    /// The deepest key whose name or value contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let mut best = None;
        let mut stack = vec![(KeyPath::root(), Node::Table(self.doc.as_table()))];
        while let Some((at, node)) = stack.pop() {
            for (path, child, key_span) in node.children(&at) {
                let hit =
                    |s: &Option<Range<usize>>| s.as_ref().is_some_and(|s| s.contains(&offset));
                if hit(&key_span) || hit(&child.span()) {
                    best = Some(path.clone());
                }
                stack.push((path, child));
            }
        }
        best
    }

    pub(super) fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let path = span.as_ref().and_then(|s| self.path_at(s.start));
        let location = self.location(span);
        let message = e.message().trim_end().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once("`, ") {
                let expected = expected.strip_prefix("expected ").unwrap_or(expected);
                // A flattened or tagged table (`[[sink]]`) is deserialized from a buffer, so the
                // error points at the table: point at the key in it instead.
                let (path, location) = match path.as_ref().map(|p| p.key(key)) {
                    Some(at_key) if self.span_of(&at_key).is_some() => {
                        let location = self.location_of(&at_key);
                        (Some(at_key), location)
                    }
                    _ => (path, location),
                };
                let table = path
                    .map(|p| p.parent_table())
                    .unwrap_or_else(|| "the config".into());
                return ConfigError::UnknownKey {
                    location,
                    key: key.to_string(),
                    table,
                    expected: expected.to_string(),
                };
            }
        }
        // A flattened table's value error names its key first (`batch_max: invalid type: …`),
        // since it is reported at the table: point at that key.
        if let Some((key, reason)) = message.split_once(": ") {
            if let Some(at_key) = path
                .as_ref()
                .map(|p| p.key(key))
                .filter(|at_key| self.span_of(at_key).is_some())
            {
                return ConfigError::Invalid {
                    location: self.location_of(&at_key),
                    key: at_key.to_string(),
                    reason: reason.to_string(),
                };
            }
        }
        match path {
            Some(path) => ConfigError::Invalid {
                location,
                key: path.to_string(),
                reason: message,
            },
            None => ConfigError::Syntax { location, message },
        }
    }
}

/// 1-based line number of byte `offset`; offsets past the end count as the last line.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
