//! Visible-text extraction for page-parser.
//!
//! Promises: the text of an element is the concatenation of its descendant
//! text nodes in document order, leaving out anything inside `script`,
//! `style`, `noscript` and `template`; block-level elements (`p`, `div`,
//! `li`, headings, table cells, `br` ...) are separated by whitespace so
//! their words do not run together; the result is trimmed with every
//! whitespace run collapsed to one space. Traversal is iterative, so
//! deeply nested pages cannot overflow the (small) WebAssembly stack.

use ego_tree::iter::Edge;
use scraper::{ElementRef, Node};

/// Trims `s` and collapses every run of whitespace into one space.
pub fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Elements whose contents are never visible text.
pub fn is_invisible(name: &str) -> bool {
    matches!(name, "script" | "style" | "noscript" | "template")
}

/// Elements that start a new line when rendered.
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

/// Appends the visible text under `el` (not collapsed) to `out`.
pub fn push_visible_text(el: ElementRef<'_>, out: &mut String) {
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
                    Node::Element(e) if is_invisible(e.name()) && node.id() != el.id() => {
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
pub fn visible_text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    push_visible_text(el, &mut out);
    collapse_ws(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scraper::Html;

    fn body_text(html: &str) -> String {
        let doc = Html::parse_document(html);
        visible_text(doc.root_element())
    }

    #[test]
    fn skips_script_style_noscript_template() {
        assert_eq!(
            body_text(
                "<head><style>p{}</style><script>var a = '<p>';</script></head><body>a<script>x()</script>\
                 <noscript>enable js</noscript><template><p>t</p></template>b</body>"
            ),
            "ab"
        );
    }

    #[test]
    fn separates_blocks_but_not_inline_elements() {
        assert_eq!(
            body_text(
                "<p>one</p><p>two</p><div>th<b>re</b>e<br>four</div><ul><li>a</li><li>b</li></ul>"
            ),
            "one two three four a b"
        );
    }

    #[test]
    fn collapses_whitespace() {
        assert_eq!(body_text("<p>  a \n\n b\u{a0}&nbsp;c </p>"), "a b c");
        assert_eq!(collapse_ws(" \t\n "), "");
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // A recursive walk would overflow this small stack at this depth.
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                body_text(&format!(
                    "{}deep{}",
                    "<div>".repeat(5_000),
                    "</div>".repeat(5_000)
                ))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(text, "deep");
    }

    #[test]
    fn selected_invisible_element_still_yields_its_text() {
        let doc = Html::parse_document("<body><noscript>only</noscript></body>");
        let sel = scraper::Selector::parse("noscript").unwrap();
        let el = doc.select(&sel).next().unwrap();
        assert_eq!(visible_text(el), "only");
    }
}
