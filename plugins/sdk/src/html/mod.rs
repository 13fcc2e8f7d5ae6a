//! HTML text utilities shared by the HTML-reading plugins.
//!
//! - [`collapse_ws`]: trims and collapses whitespace (non-breaking spaces
//!   included) to single ASCII spaces.
//! - [`decode_entities`]: character references decoded as a browser decodes
//!   them in text: every named reference of the HTML standard, with or
//!   without its `;` where the standard allows that, and numeric references
//!   with the standard's repairs (`&#146;` is `’`, `&#0;` is U+FFFD).
//! - [`visible_text`]: the text a reader sees under a scraper element:
//!   nothing from `script`, `style`, `noscript` or `template`, and a space
//!   between block-level elements so their words do not run together.
//!   Iterative, so deeply nested pages cannot overflow the small
//!   WebAssembly stack.
//! - [`tokenize`]: a streaming tokenizer and tree walker that build no DOM.

pub mod tokenize;

use std::borrow::Cow;

use ego_tree::iter::Edge;
use scraper::{ElementRef, Node};

/// Trims `s` and collapses every run of whitespace into one space.
pub fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_collapsed(s, &mut out);
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Appends `s` to `out` with whitespace collapsed, continuing an `out`
/// built the same way: runs of whitespace, also across pieces, become one
/// space, and no space is written at the start. `out` may end with one
/// space; trim it when done.
pub fn push_collapsed(s: &str, out: &mut String) {
    if s.starts_with(char::is_whitespace) && !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
    let mut words = s.split_whitespace();
    let Some(first) = words.next() else { return };
    out.push_str(first);
    for word in words {
        out.push(' ');
        out.push_str(word);
    }
    if s.ends_with(char::is_whitespace) {
        out.push(' ');
    }
}

/// Returns `Some(s)` when `s` is not empty.
pub fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// Elements whose contents are never visible text.
pub fn is_invisible(name: &str) -> bool {
    matches!(name, "script" | "style" | "noscript" | "template")
}

/// Elements that start a new line when rendered, so their text must not run
/// into their neighbours' text.
pub fn is_block(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "body"
            | "br"
            | "caption"
            | "dd"
            | "details"
            | "dialog"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hr"
            | "li"
            | "main"
            | "nav"
            | "ol"
            | "option"
            | "p"
            | "pre"
            | "section"
            | "summary"
            | "table"
            | "tbody"
            | "td"
            | "tfoot"
            | "th"
            | "thead"
            | "title"
            | "tr"
            | "ul"
    )
}

/// How [`visible_text`] treats the element it starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// Whether an invisible element (`script`, `noscript` ...) that was
    /// selected on purpose yields its text. page-parser's selectors may pick
    /// a `noscript` and want its text; recipe-parser never does.
    pub selected_invisible_root: bool,
}

/// Appends the visible text under `el` to `out`, not collapsed.
pub fn push_visible_text(el: ElementRef<'_>, opts: TextOptions, out: &mut String) {
    // While inside an invisible element, the id of that element.
    let mut hidden = None;
    for edge in el.traverse() {
        match edge {
            Edge::Open(node) => {
                if hidden.is_some() {
                    continue;
                }
                match node.value() {
                    Node::Text(t) => out.push_str(t),
                    Node::Element(e)
                        if is_invisible(e.name())
                            && !(opts.selected_invisible_root && node.id() == el.id()) =>
                    {
                        hidden = Some(node.id())
                    }
                    Node::Element(e) if is_block(e.name()) => out.push(' '),
                    _ => {}
                }
            }
            Edge::Close(node) => {
                if hidden == Some(node.id()) {
                    hidden = None;
                } else if hidden.is_none()
                    && let Node::Element(e) = node.value()
                    && is_block(e.name())
                {
                    out.push(' ');
                }
            }
        }
    }
}

/// The visible text under `el`, whitespace collapsed.
pub fn visible_text(el: ElementRef<'_>, opts: TextOptions) -> String {
    let mut out = String::new();
    push_visible_text(el, opts, &mut out);
    collapse_ws(&out)
}

/// Decodes the character references in `s`, as in HTML text content.
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    decode(s, false)
}

/// Decodes the character references in an attribute value: as
/// [`decode_entities`], except that a named reference without its `;`
/// followed by a letter, digit or `=` is left alone (`?a=1&copy=2`).
pub fn decode_attribute(s: &str) -> Cow<'_, str> {
    decode(s, true)
}

fn decode(s: &str, in_attribute: bool) -> Cow<'_, str> {
    let Some(first) = memchr::memchr(b'&', s.as_bytes()) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..];
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match reference(rest, in_attribute) {
            Some((len, a, b)) => {
                out.push(a);
                if let Some(b) = b {
                    out.push(b);
                }
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The reference at the start of `s` (which starts with `&`): its length
/// and the one or two characters it stands for.
fn reference(s: &str, in_attribute: bool) -> Option<(usize, char, Option<char>)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let (hex, start) = match b.get(2) {
            Some(b'x' | b'X') => (true, 3),
            _ => (false, 2),
        };
        let digits = b[start..]
            .iter()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let text = &s[start..start + digits];
        let code = u32::from_str_radix(text, if hex { 16 } else { 10 }).unwrap_or(u32::MAX);
        let mut len = start + digits;
        if b.get(len) == Some(&b';') {
            len += 1;
        }
        return Some((len, numeric_char(code), None));
    }
    let name_len = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &s[1..1 + name_len];
    if b.get(1 + name_len) == Some(&b';') && name_len < 40 {
        let mut key = [0u8; 41];
        key[..name_len].copy_from_slice(name.as_bytes());
        key[name_len] = b';';
        let key = std::str::from_utf8(&key[..=name_len]).unwrap_or("");
        if let Some(&(a, b2)) = markup5ever::data::NAMED_ENTITIES.get(key)
            && a != 0
        {
            return Some((name_len + 2, char_of(a), (b2 != 0).then(|| char_of(b2))));
        }
    }
    // Legacy references without `;` (`&amp`, `&copy`): the longest that is one.
    for len in (2..=name_len.min(6)).rev() {
        if let Some(&(a, b2)) = markup5ever::data::NAMED_ENTITIES.get(&name[..len])
            && a != 0
        {
            let next = b.get(1 + len).copied();
            if in_attribute && next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'=') {
                return None;
            }
            return Some((len + 1, char_of(a), (b2 != 0).then(|| char_of(b2))));
        }
    }
    None
}

fn char_of(code: u32) -> char {
    char::from_u32(code).unwrap_or('\u{FFFD}')
}

/// A numeric reference's character, with the HTML standard's repairs.
fn numeric_char(code: u32) -> char {
    const WINDOWS_1252: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match code {
        0 => '\u{FFFD}',
        0x80..=0x9F => char_of(WINDOWS_1252[(code - 0x80) as usize]),
        _ => char_of(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scraper::Html;

    fn body_text(html: &str, opts: TextOptions) -> String {
        visible_text(Html::parse_document(html).root_element(), opts)
    }

    #[test]
    fn collapses_whitespace_including_nbsp() {
        assert_eq!(collapse_ws("  a \n\t b\u{a0}\u{a0}c  "), "a b c");
        assert_eq!(collapse_ws(" \t\n "), "");
    }

    #[test]
    fn push_collapsed_joins_pieces_as_one_string_would() {
        let pieces = ["  1 ", "cup", " flour", "\n", "(sifted)", " "];
        let mut out = String::new();
        for p in pieces {
            push_collapsed(p, &mut out);
        }
        assert_eq!(out.trim_end(), collapse_ws(&pieces.concat()));
    }

    #[test]
    fn decodes_named_numeric_and_legacy_references() {
        assert_eq!(decode_entities("Mac &amp; Cheese"), "Mac & Cheese");
        assert_eq!(
            decode_entities("Cr&egrave;me br&ucirc;l&eacute;e"),
            "Crème brûlée"
        );
        assert_eq!(
            decode_entities("350&deg;F &#x2013; hot &#8217;"),
            "350°F – hot ’"
        );
        assert_eq!(decode_entities("&frac12; cup"), "½ cup");
        assert_eq!(decode_entities("Grandma&#146;s"), "Grandma’s");
        assert_eq!(decode_entities("&copy 2024 &amp"), "© 2024 &");
        assert_eq!(
            decode_entities("AT&T &nosuch; & &#;"),
            "AT&T &nosuch; & &#;"
        );
        assert_eq!(decode_entities("&#0;&#x110000;"), "\u{FFFD}\u{FFFD}");
        assert!(matches!(decode_entities("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn attribute_values_keep_query_strings() {
        assert_eq!(decode_attribute("/?a=1&copy=2&amp;b"), "/?a=1&copy=2&b");
        assert_eq!(decode_entities("&copy=2"), "©=2");
    }

    #[test]
    fn skips_script_style_noscript_template() {
        assert_eq!(
            body_text(
                "<head><style>p{}</style><script>var a = '<p>';</script></head><body>a<script>x()</script>\
                 <noscript>enable js</noscript><template><p>t</p></template>b</body>",
                TextOptions::default()
            ),
            "ab"
        );
    }

    #[test]
    fn separates_blocks_but_not_inline_elements() {
        assert_eq!(
            body_text(
                "<p>one</p><p>two</p><div>th<b>re</b>e<br>four</div><ul><li>a</li><li>b</li></ul>",
                TextOptions::default()
            ),
            "one two three four a b"
        );
    }

    #[test]
    fn a_selected_invisible_element_yields_its_text_only_when_asked() {
        let doc = Html::parse_document("<body><noscript>only</noscript></body>");
        let sel = scraper::Selector::parse("noscript").unwrap();
        let el = doc.select(&sel).next().unwrap();
        let asked = TextOptions {
            selected_invisible_root: true,
        };
        assert_eq!(visible_text(el, asked), "only");
        assert_eq!(visible_text(el, TextOptions::default()), "");
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // A recursive walk would overflow this small stack at this depth.
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let html = format!("{}deep{}", "<div>".repeat(5_000), "</div>".repeat(5_000));
                body_text(&html, TextOptions::default())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(text, "deep");
    }
}
