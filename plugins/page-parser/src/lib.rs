//! Page parser plugin (seed crawler step): turns an HTML page into
//! `{"url": str|null, "title": str|null, "text": str}`.
//!
//! Output is one compact JSON value on the default route with the input's
//! key and no headers.
//!
//! Promises:
//! - `text` is the visible text of the elements matching `body_selector`
//!   (CSS, default `body`), in document order, without `script`, `style`,
//!   `noscript` or `template` contents, block elements separated and
//!   whitespace collapsed. An element nested in an earlier match is not
//!   counted twice. No match, or only empty text, is an `invalid` error.
//! - Alternatively `xpath` (an XPath 3.1 expression, evaluated with the
//!   pure-Rust `skyscraper` crate) chooses the body instead of
//!   `body_selector`; the two cannot both be set. Needs the default cargo
//!   feature `xpath`; without it, setting `xpath` makes `init` fail.
//! - `title` is the text of the first element matching `title_selector`
//!   (CSS, default `title`) that has text, or else its `content`
//!   attribute (so `meta[property="og:title"]` works); `null` if none.
//! - `url` is the value of the header named `url_header` (default `url`,
//!   matched case-insensitively) if it is UTF-8, else the record key if it is
//!   UTF-8, else `null`.
//! - If `banned_marker` is set and the raw page contains it, the record
//!   fails with a `transient` error "page contains banned marker ...".
//! - Non-UTF-8 pages are decoded lossily.
//! - `init` fails, naming the parameter, for an unknown parameter, an
//!   invalid CSS selector or XPath expression (also naming the expression),
//!   or an empty `banned_marker` / `url_header`.

mod xpath;

use std::cell::RefCell;
use std::rc::Rc;

use scraper::{ElementRef, Html, Selector};
use serde::Serialize;

use sluice_plugin::html::{TextOptions, collapse_ws};

/// page-parser's selectors may pick an invisible element (a `noscript`) on
/// purpose, and then want its text.
const TEXT: TextOptions = TextOptions {
    selected_invisible_root: true,
};

/// The visible text under `el`, whitespace collapsed.
fn visible_text(el: scraper::ElementRef<'_>) -> String {
    sluice_plugin::html::visible_text(el, TEXT)
}
use crate::xpath::XpathBody;

use sluice_plugin::{Guest, Input, Output, ProcessError};

use sluice_plugin::{ErrorKind, Header};

/// What chooses the page body.
#[derive(Debug)]
pub enum BodySource {
    /// A CSS selector; every (outermost) match contributes text.
    Css {
        /// The selector as given.
        source: String,
        /// The compiled selector.
        selector: Selector,
    },
    /// An XPath expression.
    Xpath(XpathBody),
}

/// The plugin's parsed parameters.
#[derive(Debug)]
pub struct Config {
    /// `title_selector` as given.
    pub title_source: String,
    /// `title_selector`, compiled.
    pub title: Selector,
    /// `body_selector` or `xpath`.
    pub body: BodySource,
    /// `banned_marker`, if set.
    pub banned_marker: Option<String>,
    /// `url_header`.
    pub url_header: String,
}

/// Compiles a CSS selector parameter, naming the parameter and selector on
/// failure.
fn css(param: &str, source: &str) -> Result<Selector, String> {
    Selector::parse(source).map_err(|e| {
        format!("page-parser: parameter `{param}` is not a valid CSS selector: {source:?} ({e})")
    })
}

/// The parameters page-parser takes.
const KNOWN_PARAMS: &[&str] = &[
    "title_selector",
    "body_selector",
    "xpath",
    "banned_marker",
    "url_header",
];

/// Parses the plugin's parameters.
pub fn parse_params(params: &[(String, String)]) -> Result<Config, String> {
    sluice_plugin::Params::new("page-parser", KNOWN_PARAMS, params.to_vec())?;
    let mut title_source = "title".to_string();
    let mut body_source = None;
    let mut xpath_source = None;
    let mut banned_marker = None;
    let mut url_header = "url".to_string();
    for (key, value) in params {
        match key.as_str() {
            "title_selector" => title_source = value.clone(),
            "body_selector" => body_source = Some(value.clone()),
            "xpath" => xpath_source = Some(value.clone()),
            "banned_marker" => {
                if value.is_empty() {
                    return Err(
                        "page-parser: parameter `banned_marker` must not be empty".to_string()
                    );
                }
                banned_marker = Some(value.clone());
            }
            "url_header" => {
                if value.trim().is_empty() {
                    return Err("page-parser: parameter `url_header` must not be empty".to_string());
                }
                url_header = value.trim().to_string();
            }
            _ => {} // refused by Params above
        }
    }
    let title = css("title_selector", &title_source)?;
    let body = match (body_source, xpath_source) {
        (Some(_), Some(_)) => {
            return Err(
                "page-parser: parameters `body_selector` and `xpath` cannot both be set"
                    .to_string(),
            );
        }
        (_, Some(_)) if !cfg!(feature = "xpath") => {
            return Err(
                "page-parser: parameter `xpath` is not supported: this build has no XPath \
                        support (cargo feature `xpath`)"
                    .to_string(),
            );
        }
        (_, Some(source)) => BodySource::Xpath(XpathBody::compile(&source).map_err(|e| {
            format!(
                "page-parser: parameter `xpath` is not a valid XPath expression: {source:?} ({e})"
            )
        })?),
        (source, None) => {
            let source = source.unwrap_or_else(|| "body".to_string());
            let selector = css("body_selector", &source)?;
            BodySource::Css { source, selector }
        }
    };
    Ok(Config {
        title_source,
        title,
        body,
        banned_marker,
        url_header,
    })
}

/// The plugin's output value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The page's URL, from a header or the record key.
    pub url: Option<String>,
    /// The page title.
    pub title: Option<String>,
    /// The page body's visible text.
    pub text: String,
}

/// Why a page could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The page will never parse (no body, bad markup for the expression).
    Invalid(String),
    /// The page may parse later (it is a ban page).
    Transient(String),
}

/// Parses one page. `url` is the URL to report.
pub fn parse_page(html: &str, url: Option<String>, config: &Config) -> Result<Page, Failure> {
    if let Some(marker) = &config.banned_marker
        && html.contains(marker.as_str())
    {
        return Err(Failure::Transient(format!(
            "page contains banned marker {marker:?}"
        )));
    }
    let doc = Html::parse_document(html);
    let title = doc.select(&config.title).find_map(title_of);
    let text = match &config.body {
        BodySource::Css { source, selector } => css_body_text(&doc, selector).ok_or_else(|| {
            Failure::Invalid(format!("body_selector {source:?} matched no element"))
        })?,
        BodySource::Xpath(xpath) => xpath
            .text(html)
            .map_err(Failure::Invalid)?
            .ok_or_else(|| Failure::Invalid(format!("xpath {:?} matched nothing", xpath.source)))?,
    };
    if text.is_empty() {
        let what = match &config.body {
            BodySource::Css { source, .. } => format!("body_selector {source:?}"),
            BodySource::Xpath(x) => format!("xpath {:?}", x.source),
        };
        return Err(Failure::Invalid(format!("{what} matched only empty text")));
    }
    Ok(Page { url, title, text })
}

/// The title an element gives: its text, or else its `content` attribute.
fn title_of(el: ElementRef<'_>) -> Option<String> {
    let text = visible_text(el);
    if !text.is_empty() {
        return Some(text);
    }
    let content = collapse_ws(el.attr("content")?);
    (!content.is_empty()).then_some(content)
}

/// The visible text of the outermost matches of `selector`, or `None` if
/// nothing matches.
fn css_body_text(doc: &Html, selector: &Selector) -> Option<String> {
    let mut out = String::new();
    let mut last: Option<ElementRef<'_>> = None;
    for el in doc.select(selector) {
        // Matches come in document order: a match nested in an earlier one
        // is nested in the most recent outermost match.
        if let Some(outer) = last
            && el.ancestors().any(|a| a.id() == outer.id())
        {
            continue;
        }
        last = Some(el);
        out.push(' ');
        sluice_plugin::html::push_visible_text(el, TEXT, &mut out);
    }
    last.map(|_| collapse_ws(&out))
}

/// The URL to report: the `url_header` header if UTF-8, else the key if
/// UTF-8, else none.
pub fn page_url(headers: &[Header], key: Option<&[u8]>, url_header: &str) -> Option<String> {
    let from_header = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(url_header))
        .and_then(|h| std::str::from_utf8(&h.value).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let from_key = || {
        key.and_then(|k| std::str::from_utf8(k).ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    from_header.or_else(from_key).map(str::to_string)
}

thread_local! {
    /// Parameters set by `init`. `None` until then (then defaults apply).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// The configuration in force, initialising it with defaults if `init` was
/// never called.
fn config() -> Result<Rc<Config>, String> {
    if let Some(c) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let c = Rc::new(parse_params(&[])?);
    CONFIG.with(|slot| *slot.borrow_mut() = Some(Rc::clone(&c)));
    Ok(c)
}

/// The plugin's export implementation.
struct PageParser;

impl Guest for PageParser {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        let config = Rc::new(parse_params(&params)?);
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let config = config().map_err(|message| ProcessError {
            kind: ErrorKind::Invalid,
            message,
        })?;
        let html = String::from_utf8_lossy(&rec.value);
        let url = page_url(&rec.headers, rec.key.as_deref(), &config.url_header);
        let page = parse_page(&html, url, &config).map_err(|f| match f {
            Failure::Invalid(message) => ProcessError {
                kind: ErrorKind::Invalid,
                message,
            },
            Failure::Transient(message) => ProcessError {
                kind: ErrorKind::Transient,
                message,
            },
        })?;
        let value = serde_json::to_vec(&page).map_err(|e| ProcessError {
            kind: ErrorKind::Invalid,
            message: format!("cannot encode page: {e}"),
        })?;
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value,
            headers: Vec::new(),
        }])
    }
}

sluice_plugin::export!(PageParser);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        parse_params(&params(pairs)).unwrap()
    }

    fn header(name: &str, value: &[u8]) -> Header {
        Header {
            name: name.into(),
            value: value.to_vec(),
        }
    }

    const PAGE: &str = "<html><head><title>Hello</title></head><body><nav>menu</nav>\
        <article><p>Body   text</p><script>x()</script></article></body></html>";

    #[test]
    fn defaults() {
        let c = cfg(&[]);
        assert_eq!(c.title_source, "title");
        assert!(matches!(&c.body, BodySource::Css { source, .. } if source == "body"));
        assert_eq!(c.banned_marker, None);
        assert_eq!(c.url_header, "url");
        let page = parse_page(PAGE, None, &c).unwrap();
        assert_eq!(
            page,
            Page {
                url: None,
                title: Some("Hello".into()),
                text: "menu Body text".into()
            }
        );
    }

    #[test]
    fn body_selector_and_script_exclusion() {
        let page = parse_page(
            PAGE,
            Some("u".into()),
            &cfg(&[("body_selector", "article")]),
        )
        .unwrap();
        assert_eq!(page.text, "Body text");
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"url":"u","title":"Hello","text":"Body text"}"#
        );
    }

    #[test]
    fn nested_matches_are_not_repeated() {
        let html = "<body><div>a<div>b</div></div><div>c</div></body>";
        assert_eq!(
            parse_page(html, None, &cfg(&[("body_selector", "div")]))
                .unwrap()
                .text,
            "a b c"
        );
    }

    #[test]
    fn several_matches_in_order() {
        let html = "<body><p class=x>one</p><p>skip</p><p class=x>two</p></body>";
        assert_eq!(
            parse_page(html, None, &cfg(&[("body_selector", "p.x")]))
                .unwrap()
                .text,
            "one two"
        );
    }

    #[test]
    fn title_selector_and_content_fallback() {
        let html = r#"<head><title>T</title><meta property="og:title" content=" OG  title "></head><body>x</body>"#;
        let c = cfg(&[("title_selector", r#"meta[property="og:title"]"#)]);
        assert_eq!(
            parse_page(html, None, &c).unwrap().title.as_deref(),
            Some("OG title")
        );
        let c = cfg(&[("title_selector", "h1")]);
        assert_eq!(parse_page(html, None, &c).unwrap().title, None);
    }

    #[test]
    fn banned_marker_is_transient() {
        let c = cfg(&[("banned_marker", "IP banned")]);
        let err = parse_page("<html><body>Your IP banned</body></html>", None, &c).unwrap_err();
        assert_eq!(
            err,
            Failure::Transient("page contains banned marker \"IP banned\"".into())
        );
        assert!(parse_page(PAGE, None, &c).is_ok());
    }

    #[test]
    fn empty_body_is_invalid() {
        let err = parse_page(
            "<html><body>  <script>x()</script> </body></html>",
            None,
            &cfg(&[]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Failure::Invalid("body_selector \"body\" matched only empty text".into())
        );
        let err = parse_page(PAGE, None, &cfg(&[("body_selector", "main")])).unwrap_err();
        assert_eq!(
            err,
            Failure::Invalid("body_selector \"main\" matched no element".into())
        );
        assert!(matches!(
            parse_page("", None, &cfg(&[])),
            Err(Failure::Invalid(_))
        ));
    }

    #[test]
    fn bad_selectors_name_param_and_selector() {
        for param in ["title_selector", "body_selector"] {
            let err = parse_params(&params(&[(param, "div[")])).unwrap_err();
            assert!(
                err.contains(&format!("`{param}`")) && err.contains("\"div[\""),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_and_empty_params() {
        let err = parse_params(&params(&[("selector", "x")])).unwrap_err();
        assert!(err.contains("`selector`"), "{err}");
        assert!(
            parse_params(&params(&[("banned_marker", "")]))
                .unwrap_err()
                .contains("`banned_marker`")
        );
        assert!(
            parse_params(&params(&[("url_header", " ")]))
                .unwrap_err()
                .contains("`url_header`")
        );
    }

    #[test]
    fn url_from_header_then_key() {
        let hs = [
            header("Content-Type", b"text/html"),
            header("URL", b" https://a.test/x "),
        ];
        assert_eq!(
            page_url(&hs, Some(b"k"), "url").as_deref(),
            Some("https://a.test/x")
        );
        assert_eq!(
            page_url(&hs, Some(b"https://key.test"), "x-page").as_deref(),
            Some("https://key.test")
        );
        assert_eq!(
            page_url(&[header("url", &[0xff])], Some(b"k"), "url").as_deref(),
            Some("k")
        );
        assert_eq!(page_url(&[], Some(&[0xff, 0xfe]), "url"), None);
        assert_eq!(page_url(&[], None, "url"), None);
        let c = cfg(&[("url_header", "x-source")]);
        assert_eq!(c.url_header, "x-source");
    }

    #[cfg(feature = "xpath")]
    #[test]
    fn xpath_param() {
        let c = cfg(&[("xpath", "//article/p")]);
        assert!(matches!(c.body, BodySource::Xpath(_)));
        let page = parse_page(PAGE, None, &c).unwrap();
        assert_eq!(page.text, "Body text");
        assert_eq!(page.title.as_deref(), Some("Hello"));
        let err = parse_page(PAGE, None, &cfg(&[("xpath", "//table")])).unwrap_err();
        assert_eq!(
            err,
            Failure::Invalid("xpath \"//table\" matched nothing".into())
        );
        let err = parse_page(PAGE, None, &cfg(&[("xpath", "//script/@src")])).unwrap_err();
        assert_eq!(
            err,
            Failure::Invalid("xpath \"//script/@src\" matched nothing".into())
        );
    }

    #[cfg(not(feature = "xpath"))]
    #[test]
    fn xpath_param_needs_the_feature() {
        let err = parse_params(&params(&[("xpath", "//p")])).unwrap_err();
        assert!(
            err.contains("`xpath`") && err.contains("no XPath support"),
            "{err}"
        );
    }

    #[cfg(feature = "xpath")]
    #[test]
    fn bad_xpath_names_param_and_expression() {
        let err = parse_params(&params(&[("xpath", "//div[")])).unwrap_err();
        assert!(
            err.contains("`xpath`") && err.contains("\"//div[\""),
            "{err}"
        );
        let err = parse_params(&params(&[("xpath", "//p"), ("body_selector", "p")])).unwrap_err();
        assert!(
            err.contains("`body_selector`") && err.contains("`xpath`"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_pages_are_decoded_lossily() {
        let bytes = b"<body>caf\xe9 ok</body>";
        let html = String::from_utf8_lossy(bytes);
        assert_eq!(
            parse_page(&html, None, &cfg(&[])).unwrap().text,
            "caf\u{fffd} ok"
        );
    }

    #[test]
    fn recipe_pages_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/recipes/pages");
        let html = std::fs::read_to_string(dir.join("jsonld-plain.html")).unwrap();
        let page = parse_page(&html, None, &cfg(&[("body_selector", "article.recipe")])).unwrap();
        assert_eq!(
            page.title.as_deref(),
            Some("Classic Beef Lasagna Recipe | Hearth & Home Kitchen")
        );
        assert!(
            page.text.starts_with("Classic Beef Lasagna By Maria Rossi"),
            "{}",
            page.text
        );
        assert!(!page.text.contains("dataLayer"));
        if cfg!(feature = "xpath") {
            let xpath = cfg(&[("xpath", "//article[@class='recipe']")]);
            assert_eq!(parse_page(&html, None, &xpath).unwrap().text, page.text);
        }
    }
}
