//! A streaming HTML tokenizer and tree walker that build no DOM.
//!
//! For plugins that read a few things from large pages: it jumps from `<` to
//! `<` with `memchr`, skips comments, doctypes and the contents of `script`,
//! `style` and the other raw-text elements in one search each, and borrows
//! every name, attribute and text from the page (nothing is copied unless
//! asked for, e.g. by [`Tag::attr_decoded`]).
//!
//! Promises:
//! - [`Tokenizer`] yields start tags, end tags, text and raw text in page
//!   order, with their byte offsets; a `>` inside a quoted attribute value
//!   does not end a tag; a tag cut off by the end of the page is dropped,
//!   as browsers drop it.
//! - [`Walker`] adds what a browser's tree builder implies, so every opened
//!   element is closed exactly once, in nesting order: void elements close at
//!   once; `<li>`, `<dt>`/`<dd>`, `<option>`, `<tr>`, `<td>`/`<th>` and a
//!   block after an open `<p>` close their open predecessor; an end tag
//!   closes the nearest open element of its name and everything opened
//!   inside it; an end tag with nothing to close is ignored; the end of the
//!   page closes everything. Nesting deeper than [`MAX_DEPTH`] is flattened.
//! - It is not a full HTML5 parser: misnested formatting elements, foreign
//!   content and `<table>` foster-parenting are not rebuilt. Use scraper
//!   where that matters.

use std::borrow::Cow;

use memchr::{memchr, memmem};

use super::{decode_attribute, decode_entities, is_block, is_invisible, push_collapsed};

/// Open elements deeper than this are not tracked (treated as void).
pub const MAX_DEPTH: usize = 512;

/// One token of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A start tag.
    Start(Tag<'a>),
    /// An end tag: its name as written, and the offsets of its `<` and just
    /// past its `>`.
    End {
        /// The element name as written (compare ignoring ASCII case).
        name: &'a str,
        /// Offset of the `<`.
        at: usize,
        /// Offset just past the `>`.
        end: usize,
    },
    /// Text between tags, character references not decoded.
    Text(&'a str),
    /// The contents of a raw-text element (`script`, `style`, `title`,
    /// `textarea` ...), which follow its start tag.
    Raw(&'a str),
}

/// A start tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The element name as written (compare ignoring ASCII case).
    pub name: &'a str,
    /// Everything between the name and the closing `>` (or `/>`).
    pub attrs: &'a str,
    /// Offset of the `<`.
    pub at: usize,
    /// Offset just past the `>`.
    pub end: usize,
}

impl<'a> Tag<'a> {
    /// Whether this is an element called `name` (ASCII case ignored).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The raw value of attribute `name` (ASCII case ignored), references
    /// not decoded; `""` for an attribute without a value.
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        Attrs { rest: self.attrs }
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of attribute `name` with its character references decoded.
    pub fn attr_decoded(&self, name: &str) -> Option<Cow<'a, str>> {
        self.attr(name).map(decode_attribute)
    }

    /// Every attribute as `(name, raw value)`, in the order written.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs { rest: self.attrs }
    }
}

/// The attributes of a [`Tag`].
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self
            .rest
            .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let b = s.as_bytes();
        // An attribute name may start with `=`; it ends at whitespace, `/`,
        // `>` or a later `=`.
        let name_len = 1 + b[1..]
            .iter()
            .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'/' | b'='))
            .count();
        let name = &s[..name_len];
        let after = s[name_len..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let Some(value) = after.strip_prefix('=') else {
            self.rest = after;
            return Some((name, ""));
        };
        let value = value.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let (v, rest) = match value.as_bytes().first() {
            Some(&q @ (b'"' | b'\'')) => match memchr(q, &value.as_bytes()[1..]) {
                Some(i) => (&value[1..1 + i], &value[i + 2..]),
                None => (&value[1..], ""),
            },
            _ => {
                let len = value
                    .bytes()
                    .take_while(|c| !c.is_ascii_whitespace())
                    .count();
                (&value[..len], &value[len..])
            }
        };
        self.rest = rest;
        Some((name, v))
    }
}

/// Elements whose contents are raw text, ended only by their own end tag.
fn is_raw_text(name: &str) -> bool {
    [
        "script",
        "style",
        "title",
        "textarea",
        "xmp",
        "iframe",
        "noembed",
        "noframes",
        "noscript",
        "plaintext",
    ]
    .iter()
    .any(|r| name.eq_ignore_ascii_case(r))
}

/// Splits a page into [`Token`]s.
#[derive(Debug, Clone)]
pub struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// The raw-text element whose contents come next.
    raw: Option<&'a str>,
}

impl<'a> Tokenizer<'a> {
    /// Tokenizes `src` from its start.
    pub fn new(src: &'a str) -> Self {
        Tokenizer {
            src,
            pos: 0,
            raw: None,
        }
    }

    /// Where the next token starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Offset of the next `</name` (followed by whitespace, `/`, `>` or the
    /// end) at or after `from`, or the end of the page.
    fn raw_end(&self, from: usize, name: &str) -> usize {
        let bytes = self.src.as_bytes();
        let mut at = from;
        while let Some(i) = memmem::find(&bytes[at..], b"</") {
            let start = at + i;
            let name_end = start + 2 + name.len();
            if bytes.len() >= name_end
                && bytes[start + 2..name_end].eq_ignore_ascii_case(name.as_bytes())
                && bytes
                    .get(name_end)
                    .is_none_or(|c| c.is_ascii_whitespace() || matches!(c, b'/' | b'>'))
            {
                return start;
            }
            at = start + 2;
        }
        bytes.len()
    }

    /// Offset just past the next `>` at or after `from`, or the end.
    fn past_gt(&self, from: usize) -> usize {
        memchr(b'>', &self.src.as_bytes()[from..]).map_or(self.src.len(), |i| from + i + 1)
    }

    /// Reads the start tag at `self.pos` (a `<` then a letter).
    fn start_tag(&mut self) -> Option<Tag<'a>> {
        let bytes = self.src.as_bytes();
        let at = self.pos;
        let name_end = at
            + 1
            + bytes[at + 1..]
                .iter()
                .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'/' | b'>'))
                .count();
        let mut i = name_end;
        // Find the `>` that ends the tag, skipping quoted values.
        loop {
            let Some(j) = memchr::memchr3(b'>', b'"', b'\'', &bytes[i..]) else {
                self.pos = bytes.len();
                return None;
            };
            let c = bytes[i + j];
            if c == b'>' {
                i += j;
                break;
            }
            // A quote opens a value only after `=` (and optional spaces).
            let before =
                self.src[name_end..i + j].trim_end_matches(|c: char| c.is_ascii_whitespace());
            if before.ends_with('=') {
                match memchr(c, &bytes[i + j + 1..]) {
                    Some(k) => i = i + j + 1 + k + 1,
                    None => {
                        self.pos = bytes.len();
                        return None;
                    }
                }
            } else {
                i += j + 1;
            }
        }
        let attrs_end = if i > name_end && bytes[i - 1] == b'/' {
            i - 1
        } else {
            i
        };
        self.pos = i + 1;
        let name = &self.src[at + 1..name_end];
        if is_raw_text(name) {
            self.raw = Some(name);
        }
        Some(Tag {
            name,
            attrs: &self.src[name_end..attrs_end.max(name_end)],
            at,
            end: i + 1,
        })
    }
}

impl<'a> Iterator for Tokenizer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let bytes = self.src.as_bytes();
        loop {
            if let Some(name) = self.raw.take() {
                let start = self.pos;
                self.pos = self.raw_end(start, name);
                if self.pos > start {
                    return Some(Token::Raw(&self.src[start..self.pos]));
                }
            }
            let pos = self.pos;
            if pos >= bytes.len() {
                return None;
            }
            if bytes[pos] != b'<' {
                let len = memchr(b'<', &bytes[pos..]).unwrap_or(bytes.len() - pos);
                self.pos += len;
                return Some(Token::Text(&self.src[pos..pos + len]));
            }
            match bytes.get(pos + 1) {
                Some(b'!') if bytes[pos..].starts_with(b"<!--") => {
                    let body = pos + 4;
                    self.pos = if bytes[body..].starts_with(b">") {
                        body + 1
                    } else if bytes[body..].starts_with(b"->") {
                        body + 2
                    } else {
                        memmem::find(&bytes[body..], b"-->").map_or(bytes.len(), |i| body + i + 3)
                    };
                }
                Some(b'!' | b'?') => self.pos = self.past_gt(pos + 2),
                Some(b'/') => match bytes.get(pos + 2) {
                    Some(c) if c.is_ascii_alphabetic() => {
                        let name_len = bytes[pos + 2..]
                            .iter()
                            .take_while(|c| !c.is_ascii_whitespace() && !matches!(c, b'/' | b'>'))
                            .count();
                        let name = &self.src[pos + 2..pos + 2 + name_len];
                        let end = self.past_gt(pos + 2 + name_len);
                        self.pos = end;
                        return Some(Token::End { name, at: pos, end });
                    }
                    _ => self.pos = self.past_gt(pos + 2),
                },
                Some(c) if c.is_ascii_alphabetic() => {
                    if let Some(tag) = self.start_tag() {
                        return Some(Token::Start(tag));
                    }
                }
                _ => {
                    // A `<` that starts no tag is text.
                    let len = 1 + memchr(b'<', &bytes[pos + 1..]).unwrap_or(bytes.len() - pos - 1);
                    self.pos += len;
                    return Some(Token::Text(&self.src[pos..pos + len]));
                }
            }
        }
    }
}

/// One step of a walk through the element tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// An element opens; `depth` counts its open ancestors.
    Open {
        /// The start tag.
        tag: Tag<'a>,
        /// How many elements enclose it.
        depth: usize,
    },
    /// An element closes.
    Close {
        /// The element name as written in its start tag.
        name: &'a str,
        /// Offset of its start tag's `<`.
        at: usize,
        /// Offset where it ends: past its end tag, or where the tag that
        /// implied its end starts.
        end: usize,
        /// How many elements enclose it.
        depth: usize,
    },
    /// Text, character references not decoded.
    Text(&'a str),
    /// The contents of a raw-text element.
    Raw(&'a str),
}

/// What the tree rules need to know about an element, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Li,
    DtDd,
    Option,
    Optgroup,
    Tr,
    Cell,
    Heading,
    P,
    /// Another element whose start closes an open `<p>`.
    Block,
    /// `ul`, `ol`, `menu`: the scope of an `<li>`.
    List,
    Dl,
    Table,
    /// Elements that bound the search for an implied end.
    Boundary,
    Void,
    /// `hr`: void, and closes an open `<p>`.
    Hr,
    Other,
}

impl Role {
    fn of(name: &str) -> Role {
        let mut buf = [0u8; 10];
        let Some(lower) = buf.get_mut(..name.len()) else {
            return Role::Other;
        };
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        match &*lower {
            b"li" => Role::Li,
            b"dt" | b"dd" => Role::DtDd,
            b"option" => Role::Option,
            b"optgroup" => Role::Optgroup,
            b"tr" => Role::Tr,
            b"td" | b"th" => Role::Cell,
            b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => Role::Heading,
            b"p" => Role::P,
            b"ul" | b"ol" | b"menu" => Role::List,
            b"dl" => Role::Dl,
            b"table" => Role::Table,
            b"hr" => Role::Hr,
            b"address" | b"article" | b"aside" | b"blockquote" | b"center" | b"details"
            | b"dialog" | b"dir" | b"div" | b"fieldset" | b"figcaption" | b"figure" | b"footer"
            | b"form" | b"header" | b"hgroup" | b"main" | b"nav" | b"pre" | b"section"
            | b"summary" => Role::Block,
            b"caption" | b"button" | b"template" | b"object" | b"marquee" | b"applet" | b"html"
            | b"svg" | b"math" => Role::Boundary,
            b"area" | b"base" | b"br" | b"col" | b"embed" | b"img" | b"input" | b"keygen"
            | b"link" | b"meta" | b"param" | b"source" | b"track" | b"wbr" => Role::Void,
            _ => Role::Other,
        }
    }

    /// Whether this element's start closes an open `<p>`.
    fn closes_p(self) -> bool {
        matches!(
            self,
            Role::P | Role::Block | Role::Heading | Role::List | Role::Dl | Role::Table | Role::Hr
        )
    }

    /// Whether the search for an implied end stops at this element.
    fn is_boundary(self) -> bool {
        matches!(self, Role::Table | Role::Cell | Role::Boundary)
    }
}

/// An element still open during a walk.
#[derive(Debug, Clone, Copy)]
struct OpenElement<'a> {
    name: &'a str,
    at: usize,
    role: Role,
}

/// Walks a page's element tree as [`Event`]s, without building it.
#[derive(Debug, Clone)]
pub struct Walker<'a> {
    tokens: Tokenizer<'a>,
    stack: Vec<OpenElement<'a>>,
    /// Events decided but not yet returned, last first.
    queued: Vec<Event<'a>>,
    /// Whether the end of the page has been reached.
    done: bool,
}

impl<'a> Walker<'a> {
    /// Walks `src` from its start.
    pub fn new(src: &'a str) -> Self {
        Walker {
            tokens: Tokenizer::new(src),
            stack: Vec::new(),
            queued: Vec::new(),
            done: false,
        }
    }

    /// Queues the closing of every element above index `keep` (which stay
    /// open), innermost first, ending at `end`.
    fn close_to(&mut self, keep: usize, end: usize, closes: &mut Vec<Event<'a>>) {
        while self.stack.len() > keep {
            let Some(open) = self.stack.pop() else { break };
            closes.push(Event::Close {
                name: open.name,
                at: open.at,
                end,
                depth: self.stack.len(),
            });
        }
    }

    /// The index of the nearest open element for which `want` holds,
    /// searching down from the top but not past one for which `stop` holds.
    fn find_open(&self, want: impl Fn(Role) -> bool, stop: impl Fn(Role) -> bool) -> Option<usize> {
        for (i, open) in self.stack.iter().enumerate().rev() {
            if want(open.role) {
                return Some(i);
            }
            if stop(open.role) {
                return None;
            }
        }
        None
    }

    /// The index to close down to before an element of `role` opens.
    fn implied_close(&self, role: Role) -> Option<usize> {
        let top = self.stack.last().map(|o| o.role);
        match role {
            Role::Li => self.find_open(|r| r == Role::Li, |r| r == Role::List || r.is_boundary()),
            Role::DtDd => self.find_open(|r| r == Role::DtDd, |r| r == Role::Dl || r.is_boundary()),
            Role::Option | Role::Optgroup => {
                (top == Some(Role::Option)).then(|| self.stack.len() - 1)
            }
            Role::Tr => self.find_open(|r| r == Role::Tr, |r| r == Role::Table),
            Role::Cell => {
                self.find_open(|r| r == Role::Cell, |r| matches!(r, Role::Tr | Role::Table))
            }
            _ if role.closes_p() => self
                .find_open(|r| r == Role::P, Role::is_boundary)
                // A heading inside a heading closes it.
                .or_else(|| {
                    (role == Role::Heading && top == Some(Role::Heading))
                        .then(|| self.stack.len() - 1)
                }),
            _ => None,
        }
    }
}

impl<'a> Iterator for Walker<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        loop {
            if let Some(event) = self.queued.pop() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let mut events = std::mem::take(&mut self.queued);
            match self.tokens.next() {
                None => {
                    self.done = true;
                    let end = self.tokens.src.len();
                    self.close_to(0, end, &mut events);
                }
                Some(Token::Text(t)) => return Some(Event::Text(t)),
                Some(Token::Raw(t)) => return Some(Event::Raw(t)),
                Some(Token::End { name, at, end }) => {
                    let found = self
                        .stack
                        .iter()
                        .rposition(|o| o.name.eq_ignore_ascii_case(name));
                    match found {
                        // The common case: the end of the innermost element.
                        Some(i) if i + 1 == self.stack.len() => {
                            let open = self.stack.pop()?;
                            return Some(Event::Close {
                                name: open.name,
                                at: open.at,
                                end,
                                depth: i,
                            });
                        }
                        Some(i) => {
                            self.close_to(i + 1, at, &mut events);
                            self.close_to(i, end, &mut events);
                        }
                        None => {}
                    }
                }
                Some(Token::Start(tag)) => {
                    let role = Role::of(tag.name);
                    let implied = self.implied_close(role);
                    let void = matches!(role, Role::Void | Role::Hr);
                    if implied.is_none() && !void && self.stack.len() < MAX_DEPTH {
                        // The common case: an element opens inside the last.
                        let depth = self.stack.len();
                        self.stack.push(OpenElement {
                            name: tag.name,
                            at: tag.at,
                            role,
                        });
                        return Some(Event::Open { tag, depth });
                    }
                    if let Some(i) = implied {
                        self.close_to(i, tag.at, &mut events);
                    }
                    let depth = self.stack.len();
                    events.push(Event::Open { tag, depth });
                    if void || depth >= MAX_DEPTH {
                        events.push(Event::Close {
                            name: tag.name,
                            at: tag.at,
                            end: tag.end,
                            depth,
                        });
                    } else {
                        self.stack.push(OpenElement {
                            name: tag.name,
                            at: tag.at,
                            role,
                        });
                    }
                }
            }
            events.reverse();
            self.queued = events;
        }
    }
}

/// The visible text of `src` (a page or a fragment of one), whitespace
/// collapsed: text with its references decoded, nothing from invisible
/// elements (`script`, `style`, `noscript`, `template`), `svg` or the
/// elements `skip` picks, and a space between block-level elements.
pub fn visible_text(src: &str, skip: impl Fn(&Tag<'_>) -> bool) -> String {
    let mut out = String::new();
    // While skipping, the depth of the skipped element.
    let mut hidden: Option<usize> = None;
    for event in Walker::new(src) {
        match event {
            Event::Open { tag, depth } if hidden.is_none() => {
                if is_invisible_tag(tag.name) || tag.is("svg") || skip(&tag) {
                    hidden = Some(depth);
                } else if is_block_tag(tag.name) {
                    push_collapsed(" ", &mut out);
                }
            }
            Event::Close { name, depth, .. } => {
                if hidden == Some(depth) {
                    hidden = None;
                } else if hidden.is_none() && is_block_tag(name) {
                    push_collapsed(" ", &mut out);
                }
            }
            Event::Text(t) if hidden.is_none() => push_collapsed(&decode_entities(t), &mut out),
            _ => {}
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

fn is_invisible_tag(name: &str) -> bool {
    with_lowercase(name, is_invisible)
}

fn is_block_tag(name: &str) -> bool {
    with_lowercase(name, is_block)
}

/// `test` of `name` in lowercase, without allocating (names longer than
/// any HTML element's are no element `test` knows).
fn with_lowercase(name: &str, test: fn(&str) -> bool) -> bool {
    let mut buf = [0u8; 12];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return false;
    };
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    std::str::from_utf8(lower).is_ok_and(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Vec<String> {
        Tokenizer::new(src)
            .map(|t| match t {
                Token::Start(tag) => format!("<{}{}>", tag.name, tag.attrs),
                Token::End { name, .. } => format!("</{name}>"),
                Token::Text(t) => format!("T{t}"),
                Token::Raw(t) => format!("R{t}"),
            })
            .collect()
    }

    /// The walk as a bracketed string: `(name … )name`.
    fn tree(src: &str) -> String {
        let mut out = String::new();
        for e in Walker::new(src) {
            match e {
                Event::Open { tag, .. } => out.push_str(&format!("({}", tag.name)),
                Event::Close { name, .. } => out.push_str(&format!("){name}")),
                Event::Text(t) | Event::Raw(t) => out.push_str(t),
            }
        }
        out
    }

    #[test]
    fn tags_text_comments_and_doctype() {
        assert_eq!(
            tokens("<!DOCTYPE html><p class=a>x<!-- <b> -->y</P><?php ?>z"),
            ["<p class=a>", "Tx", "Ty", "</P>", "Tz"]
        );
        assert_eq!(tokens("<!---->a<!-->b"), ["Ta", "Tb"]);
    }

    #[test]
    fn quoted_gt_does_not_end_a_tag() {
        let t: Vec<_> = Tokenizer::new(r#"<a title="a > b" data-x='<'>t</a>"#).collect();
        let Token::Start(tag) = t[0] else {
            panic!("{t:?}")
        };
        assert_eq!(tag.attr("title"), Some("a > b"));
        assert_eq!(tag.attr("DATA-X"), Some("<"));
        assert_eq!(t[1], Token::Text("t"));
    }

    #[test]
    fn attributes_in_every_style() {
        let src =
            r#"<input type=checkbox checked data-a = "1" class='x y' /><img alt=&quot;q&quot;>"#;
        let t: Vec<_> = Tokenizer::new(src).collect();
        let Token::Start(input) = t[0] else { panic!() };
        let attrs: Vec<_> = input.attrs().collect();
        assert_eq!(
            attrs,
            [
                ("type", "checkbox"),
                ("checked", ""),
                ("data-a", "1"),
                ("class", "x y")
            ]
        );
        let Token::Start(img) = t[1] else { panic!() };
        assert_eq!(img.attr_decoded("alt").as_deref(), Some("\"q\""));
    }

    #[test]
    fn raw_text_elements_hide_their_markup() {
        assert_eq!(
            tokens("<script>if (a<b) x='</div>'; </scripts></script><title>A &amp; <b></title>"),
            [
                "<script>",
                "Rif (a<b) x='</div>'; </scripts>",
                "</script>",
                "<title>",
                "RA &amp; <b>",
                "</title>"
            ]
        );
        assert_eq!(tokens("<style>p{}"), ["<style>", "Rp{}"]);
    }

    #[test]
    fn stray_lt_and_cut_off_tags() {
        assert_eq!(tokens("a < b <3 c"), ["Ta ", "T< b ", "T<3 c"]);
        assert_eq!(tokens("x<div class=\"a"), ["Tx"]);
        assert_eq!(tokens("x</"), ["Tx"]);
    }

    #[test]
    fn implied_ends_and_voids() {
        assert_eq!(tree("<ul><li>a<li>b</ul>"), "(ul(lia)li(lib)li)ul");
        assert_eq!(tree("<p>a<div>b</div>"), "(pa)p(divb)div");
        assert_eq!(tree("<p>a<span>b<br>c</p>"), "(pa(spanb(br)brc)span)p");
        assert_eq!(tree("<p>a<hr>b"), "(pa)p(hr)hrb");
        assert_eq!(tree("<dl><dt>a<dd>b</dl>"), "(dl(dta)dt(ddb)dd)dl");
        assert_eq!(tree("<h2>a<h3>b</h3>"), "(h2a)h2(h3b)h3");
        assert_eq!(
            tree("<ul><li>a<ul><li>b</ul><li>c</ul>"),
            "(ul(lia(ul(lib)li)ul)li(lic)li)ul"
        );
        assert_eq!(
            tree("<table><tr><td>a<td>b<tr><td>c</table>"),
            "(table(tr(tda)td(tdb)td)tr(tr(tdc)td)tr)table"
        );
    }

    #[test]
    fn end_tags_close_what_they_must() {
        assert_eq!(tree("<div><b>a</div>c"), "(div(ba)b)divc");
        assert_eq!(tree("</p>a</div>"), "a");
        assert_eq!(tree("<div><span>a"), "(div(spana)span)div");
    }

    #[test]
    fn close_offsets_cover_the_element() {
        let src = "<ul><li>a<li>b</ul>";
        let spans: Vec<_> = Walker::new(src)
            .filter_map(|e| match e {
                Event::Close { name, at, end, .. } => Some((name, &src[at..end])),
                _ => None,
            })
            .collect();
        assert_eq!(spans, [("li", "<li>a"), ("li", "<li>b"), ("ul", src)]);
    }

    #[test]
    fn visible_text_of_a_fragment() {
        let src = "<li><input type=checkbox><span>1</span> <b>cup</b>&nbsp;flour<script>x</script>\
                   <button>Add</button><svg><title>i</title></svg></li><li>2 eggs";
        assert_eq!(visible_text(src, |_| false), "1 cup flourAdd 2 eggs");
        assert_eq!(visible_text(src, |t| t.is("button")), "1 cup flour 2 eggs");
        assert_eq!(
            visible_text("<P>a</P><DIV>b</DIV>c<Br>d", |_| false),
            "a b c d"
        );
    }

    #[test]
    fn deep_nesting_is_flattened_not_recursed() {
        let src = format!("{}x{}", "<div>".repeat(10_000), "</div>".repeat(10_000));
        let opens = Walker::new(&src)
            .filter(|e| matches!(e, Event::Open { .. }))
            .count();
        let closes = Walker::new(&src)
            .filter(|e| matches!(e, Event::Close { .. }))
            .count();
        assert_eq!((opens, closes), (10_000, 10_000));
    }
}
