//! Body text chosen by an XPath expression (the `xpath` parameter), using
//! the pure-Rust `skyscraper` crate, which has its own WHATWG HTML parser.
//!
//! Promises: each item the expression returns contributes text in order:
//! an element or document contributes its visible text (same rules as CSS
//! mode: no `script`/`style`/`noscript`/`template` contents, blocks
//! separated), a text node its content, an attribute its value, and an
//! atomic value (from e.g. `normalize-space(//h1)` or `count(//p)`) its
//! string form. Traversal is iterative.
//!
//! Without the `xpath` cargo feature, [`XpathBody::compile`] always fails
//! with a message saying so, and `skyscraper` is not linked in.

#[cfg(not(feature = "xpath"))]
pub use disabled::XpathBody;
#[cfg(feature = "xpath")]
pub use enabled::XpathBody;

#[cfg(not(feature = "xpath"))]
mod disabled {
    /// Stand-in for builds without the `xpath` feature: never constructed.
    #[derive(Debug)]
    pub struct XpathBody {
        /// The expression as given.
        pub source: String,
        _never: std::convert::Infallible,
    }

    impl XpathBody {
        /// Always fails: this build has no XPath support.
        pub fn compile(_source: &str) -> Result<Self, String> {
            Err(
                "this build of page-parser has no XPath support (cargo feature `xpath`)"
                    .to_string(),
            )
        }

        /// Never called: no `XpathBody` exists in this build.
        pub fn text(&self, _html: &str) -> Result<Option<String>, String> {
            match self._never {}
        }
    }
}

#[cfg(feature = "xpath")]
mod enabled {
    use skyscraper::xpath::grammar::XpathItemTreeNode;
    use skyscraper::xpath::grammar::data_model::XpathItem;
    use skyscraper::xpath::{Xpath, XpathItemTree};

    use sluice_plugin::html::{collapse_ws, is_block, is_invisible};

    /// A compiled XPath expression and its source text.
    pub struct XpathBody {
        /// The expression as given.
        pub source: String,
        expr: Xpath,
    }

    impl std::fmt::Debug for XpathBody {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("XpathBody")
                .field("source", &self.source)
                .finish()
        }
    }

    impl XpathBody {
        /// Compiles `source`, or explains why it is not a valid expression.
        pub fn compile(source: &str) -> Result<Self, String> {
            let expr = skyscraper::xpath::parse(source).map_err(|e| e.to_string())?;
            Ok(XpathBody {
                source: source.to_string(),
                expr,
            })
        }

        /// The collapsed text of everything the expression selects in `html`.
        /// `Ok(None)` when it selects nothing.
        pub fn text(&self, html: &str) -> Result<Option<String>, String> {
            let tree = skyscraper::html::parse(html)
                .map_err(|e| format!("page could not be parsed for XPath: {e}"))?;
            let items = self
                .expr
                .apply(&tree)
                .map_err(|e| format!("xpath `{}` failed on this page: {e}", self.source))?;
            if items.is_empty() {
                return Ok(None);
            }
            let mut out = String::new();
            for item in items.iter() {
                out.push(' ');
                match item {
                    XpathItem::Node(node) => push_node_text(node, &tree, &mut out),
                    XpathItem::AnyAtomicType(atomic) => out.push_str(&atomic.to_string()),
                    _ => {}
                }
            }
            Ok(Some(collapse_ws(&out)))
        }
    }

    /// One step of the iterative walk: enter a node, or leave an element.
    enum Step<'t> {
        Enter(&'t XpathItemTreeNode),
        Leave { block: bool },
    }

    /// Appends the visible text of `node` to `out`.
    fn push_node_text(node: &XpathItemTreeNode, tree: &XpathItemTree, out: &mut String) {
        let mut stack = vec![Step::Enter(node)];
        let mut first = true;
        while let Some(step) = stack.pop() {
            let node = match step {
                Step::Leave { block } => {
                    if block {
                        out.push(' ');
                    }
                    continue;
                }
                Step::Enter(node) => node,
            };
            let is_root = std::mem::replace(&mut first, false);
            match node {
                XpathItemTreeNode::TextNode(t) => out.push_str(&t.content),
                // Attributes are children of their element in this tree: only a
                // selected attribute contributes its value.
                XpathItemTreeNode::AttributeNode(a) if is_root => out.push_str(&a.value),
                XpathItemTreeNode::ElementNode(e) => {
                    let name = e.name.to_ascii_lowercase();
                    if is_invisible(&name) && !is_root {
                        continue;
                    }
                    let block = is_block(&name);
                    if block {
                        out.push(' ');
                    }
                    stack.push(Step::Leave { block });
                    let children: Vec<_> = e.children(tree).collect();
                    stack.extend(children.into_iter().rev().map(Step::Enter));
                }
                XpathItemTreeNode::DocumentNode(_) => {
                    stack.extend(node.children(tree).into_iter().rev().map(Step::Enter));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "xpath")]
mod tests {
    use super::*;

    fn text(xpath: &str, html: &str) -> Option<String> {
        XpathBody::compile(xpath).unwrap().text(html).unwrap()
    }

    const PAGE: &str = "<html><head><title>T</title><script>s()</script></head><body>\
        <nav>menu</nav><article id=\"main\"><h1>Head</h1><p class=\"x\">One   two</p>\
        <script>x()</script><p>three<br>four</p><a href=\"/next\">next</a></article></body></html>";

    #[test]
    fn element_text_skips_scripts_and_separates_blocks() {
        assert_eq!(
            text("//article", PAGE).as_deref(),
            Some("Head One two three four next")
        );
    }

    #[test]
    fn several_items_are_joined() {
        assert_eq!(
            text("//article/p", PAGE).as_deref(),
            Some("One two three four")
        );
    }

    #[test]
    fn attributes_text_nodes_and_atomics() {
        assert_eq!(text("//a/@href", PAGE).as_deref(), Some("/next"));
        assert_eq!(text("//h1/text()", PAGE).as_deref(), Some("Head"));
        assert_eq!(
            text("normalize-space(//p[@class='x'])", PAGE).as_deref(),
            Some("One two")
        );
        assert_eq!(text("count(//p)", PAGE).as_deref(), Some("2"));
    }

    #[test]
    fn no_match_is_none() {
        assert_eq!(text("//table", PAGE), None);
    }

    #[test]
    fn invalid_expression_is_an_error() {
        assert!(XpathBody::compile("//div[").is_err());
        assert!(XpathBody::compile("").is_err());
    }

    #[test]
    fn whole_document() {
        assert_eq!(
            text("/", PAGE).as_deref(),
            Some("T menu Head One two three four next")
        );
    }
}
