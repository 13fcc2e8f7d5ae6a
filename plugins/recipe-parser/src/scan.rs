//! One streaming pass over a page: what every extractor needs to know,
//! gathered without building a DOM.
//!
//! Promises:
//! - Collects the JSON-LD scripts (borrowed, not copied), the page's
//!   canonical link, `og:url`, `og:title`, `og:site_name` and `<title>`
//!   (not an SVG's), and whether the page has any microdata attribute.
//! - Records, as byte ranges of the page, the elements the HTML fallback may
//!   read: every heading (`<h1>` to `<h6>`), and elements whose `class` or
//!   `id` names a recipe card, an ingredient list, a title or name,
//!   servings or yield, or calories. Ingredient, servings, calorie and card
//!   marks are outermost only: a marked element inside one of its own kind
//!   is part of it.
//! - Marks inside `<nav>`, `<footer>` and `<aside>` are flagged as page
//!   chrome.
//! - Class names are matched by substring, ASCII case ignored, so CSS-module
//!   names (`RecipeBody_ingredientItem__x7Q2a`) match like plain ones.

use sluice_plugin::html::tokenize::{Event, Tag, Walker};
use sluice_plugin::html::{collapse_ws, decode_entities, non_empty};

/// At most this many marks are kept; a page with more is pathological.
const MAX_MARKS: usize = 20_000;

/// What kind of element a [`Mark`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A recipe card (`wprm-recipe-container`, `tasty-recipes`, `recipe-card` ...).
    Card,
    /// An element naming ingredients (`ingredients`, `wprm-recipe-ingredient` ...).
    Ingredients,
    /// An element whose class names a title or name; `recipe` says whether
    /// the same class also says "recipe" (`recipe-title`, `RecipeHeader_title`).
    Title {
        /// Whether the class also names a recipe.
        recipe: bool,
    },
    /// Servings or yield.
    Servings,
    /// Calories.
    Calories,
    /// An `<h1>`.
    H1,
    /// An `<h2>` to `<h6>`.
    Heading,
}

/// A marked element: its kind and byte range in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// What it is.
    pub kind: Kind,
    /// Offset of its start tag.
    pub at: usize,
    /// Offset where it ends.
    pub end: usize,
    /// Whether it is inside `<nav>`, `<footer>` or `<aside>`.
    pub chrome: bool,
}

impl Mark {
    /// Whether `other` lies inside this element.
    pub fn contains(&self, other: &Mark) -> bool {
        self.at <= other.at && other.end <= self.end
    }
}

/// What one pass over a page found.
#[derive(Debug, Default)]
pub struct Page<'a> {
    /// The text of each `application/ld+json` script.
    pub ld_scripts: Vec<&'a str>,
    /// Whether any element has `itemprop` or `itemscope`.
    pub microdata: bool,
    /// `<link rel="canonical">`.
    pub canonical: Option<String>,
    /// `og:url`.
    pub og_url: Option<String>,
    /// `og:title`.
    pub og_title: Option<String>,
    /// `og:site_name`.
    pub site_name: Option<String>,
    /// The document's `<title>`.
    pub title: Option<String>,
    /// Marked elements, in the order they open.
    pub marks: Vec<Mark>,
}

/// What the next raw text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawOf {
    Other,
    LdJson,
    Title,
}

impl<'a> Page<'a> {
    /// Scans `src` once.
    pub fn scan(src: &'a str) -> Self {
        let mut page = Page::default();
        // Open marks: (depth, index into `marks`).
        let mut open: Vec<(usize, usize)> = Vec::new();
        // How many open marks of the outermost-only kinds.
        let mut inside = [0usize; 4];
        // Depths of open chrome and svg elements.
        let mut chrome: Vec<usize> = Vec::new();
        let mut svg: Vec<usize> = Vec::new();
        let mut raw = RawOf::Other;
        for event in Walker::new(src) {
            match event {
                Event::Open { tag, depth } => {
                    raw = RawOf::Other;
                    let name = tag.name;
                    if tag.attrs.is_empty() {
                        // Fast path: only the bare elements that matter.
                        if let Some(kind) = heading_kind(name) {
                            page.mark(kind, &tag, depth, !chrome.is_empty(), &mut open);
                        } else if is_chrome(name) {
                            chrome.push(depth);
                        } else if name.eq_ignore_ascii_case("svg") {
                            svg.push(depth);
                        } else if name.eq_ignore_ascii_case("title") && svg.is_empty() {
                            raw = RawOf::Title;
                        }
                        continue;
                    }
                    let (mut class, mut id) = ("", "");
                    let mut data: Option<&str> = None;
                    for (n, v) in tag.attrs() {
                        match n.len() {
                            5 if n.eq_ignore_ascii_case("class") => class = v,
                            2 if n.eq_ignore_ascii_case("id") => id = v,
                            8 if !page.microdata => page.microdata = is_recipe_microdata(n, v),
                            _ if n.len() > 5 && n[..5].eq_ignore_ascii_case("data-") => {
                                // `data-ingredients`, `data-servings`: named by attribute.
                                data = data.or(Some(&n[5..]));
                            }
                            _ => {}
                        }
                    }
                    let lower = lowercase_name(name);
                    match &*lower {
                        "script" => {
                            if tag.attr("type").is_some_and(is_ld_json) {
                                raw = RawOf::LdJson;
                            }
                            continue;
                        }
                        "meta" => {
                            page.meta(&tag);
                            continue;
                        }
                        "link" => {
                            page.link(&tag);
                            continue;
                        }
                        "svg" => svg.push(depth),
                        "title" if svg.is_empty() => raw = RawOf::Title,
                        "nav" | "footer" | "aside" => chrome.push(depth),
                        _ => {}
                    }
                    let in_chrome = !chrome.is_empty();
                    if let Some(kind) = heading_kind(name) {
                        page.mark(kind, &tag, depth, in_chrome, &mut open);
                    }
                    let Some(kinds) = classify(class, id, data.unwrap_or("")) else {
                        continue;
                    };
                    for (slot, kind) in [
                        Kind::Card,
                        Kind::Ingredients,
                        Kind::Servings,
                        Kind::Calories,
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        if kinds.contains(&kind) && inside[slot] == 0 {
                            inside[slot] += 1;
                            page.mark(kind, &tag, depth, in_chrome, &mut open);
                        }
                    }
                    if let Some(title) = kinds.title
                        && inside[1] == 0
                    {
                        page.mark(title, &tag, depth, in_chrome, &mut open);
                    }
                }
                Event::Close { depth, end, .. } => {
                    while let Some(&(d, i)) = open.last() {
                        if d != depth {
                            break;
                        }
                        open.pop();
                        page.marks[i].end = end;
                        if let Some(slot) = outermost_slot(page.marks[i].kind) {
                            inside[slot] -= 1;
                        }
                    }
                    if chrome.last() == Some(&depth) {
                        chrome.pop();
                    }
                    if svg.last() == Some(&depth) {
                        svg.pop();
                    }
                }
                Event::Raw(text) => {
                    match raw {
                        RawOf::LdJson => page.ld_scripts.push(text),
                        RawOf::Title if page.title.is_none() => {
                            page.title = non_empty(collapse_ws(&decode_entities(text)));
                        }
                        _ => {}
                    }
                    raw = RawOf::Other;
                }
                Event::Text(_) => {}
            }
        }
        page
    }

    /// Records a mark that closes when the element at `depth` does.
    fn mark(
        &mut self,
        kind: Kind,
        tag: &Tag<'_>,
        depth: usize,
        chrome: bool,
        open: &mut Vec<(usize, usize)>,
    ) {
        if self.marks.len() >= MAX_MARKS {
            return;
        }
        open.push((depth, self.marks.len()));
        self.marks.push(Mark {
            kind,
            at: tag.at,
            end: tag.end,
            chrome,
        });
    }

    fn meta(&mut self, tag: &Tag<'_>) {
        let Some(prop) = tag.attr("property").or_else(|| tag.attr("name")) else {
            return;
        };
        let slot = if prop.eq_ignore_ascii_case("og:url") {
            &mut self.og_url
        } else if prop.eq_ignore_ascii_case("og:title") {
            &mut self.og_title
        } else if prop.eq_ignore_ascii_case("og:site_name") {
            &mut self.site_name
        } else {
            return;
        };
        if slot.is_none() {
            *slot = attr_text(tag, "content");
        }
    }

    fn link(&mut self, tag: &Tag<'_>) {
        let canonical = tag.attr("rel").is_some_and(|r| {
            r.split_ascii_whitespace()
                .any(|t| t.eq_ignore_ascii_case("canonical"))
        });
        if canonical && self.canonical.is_none() {
            self.canonical = attr_text(tag, "href");
        }
    }
}

/// A tag name in lowercase, without allocating for the names that matter.
fn lowercase_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// An attribute's value, decoded and whitespace collapsed, if not empty.
fn attr_text(tag: &Tag<'_>, name: &str) -> Option<String> {
    tag.attr_decoded(name)
        .map(|v| collapse_ws(&v))
        .and_then(non_empty)
}

fn is_ld_json(t: &str) -> bool {
    t.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"))
}

/// Whether an attribute is microdata the microdata extractor reads: an
/// `itemtype` naming a recipe, or a recipe property. Pages whose microdata
/// is only a theme's `WebPage`/`Article` markup do not pay for a DOM.
fn is_recipe_microdata(name: &str, value: &str) -> bool {
    (name.eq_ignore_ascii_case("itemtype") && contains_ci(value, "recipe"))
        || (name.eq_ignore_ascii_case("itemprop")
            && value.split_ascii_whitespace().any(|p| {
                [
                    "recipeIngredient",
                    "ingredients",
                    "ingredient",
                    "recipeYield",
                    "calories",
                ]
                .iter()
                .any(|r| p.eq_ignore_ascii_case(r))
            }))
}

fn is_chrome(name: &str) -> bool {
    ["nav", "footer", "aside"]
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
}

fn heading_kind(name: &str) -> Option<Kind> {
    match name.as_bytes() {
        [b'h' | b'H', b'1'] => Some(Kind::H1),
        [b'h' | b'H', b'2'..=b'6'] => Some(Kind::Heading),
        _ => None,
    }
}

/// Which of the outermost-only counters a kind uses.
fn outermost_slot(kind: Kind) -> Option<usize> {
    match kind {
        Kind::Card => Some(0),
        Kind::Ingredients => Some(1),
        Kind::Servings => Some(2),
        Kind::Calories => Some(3),
        _ => None,
    }
}

/// The kinds one element's `class` and `id` name.
#[derive(Debug, Default)]
struct Kinds {
    list: Vec<Kind>,
    title: Option<Kind>,
}

impl Kinds {
    fn contains(&self, kind: &Kind) -> bool {
        self.list.contains(kind)
    }
}

/// Words in a class that make a title-or-name class something else.
const NOT_A_TITLE: &[&str] = &[
    "author",
    "label",
    "ingredi",
    "unit",
    "site",
    "group",
    "nutrition",
    "instruction",
    "equipment",
    "step",
    "time",
    "serving",
    "note",
    "rating",
    "categor",
    "cuisine",
    "course",
    "tag",
    "video",
    "image",
    "img",
    "meta",
    "button",
    "widget",
    "comment",
    "menu",
    "nav",
    "logo",
    "brand",
    "link",
    "related",
    "sidebar",
    "footer",
    "header-title",
    "subtitle",
    "calori",
    "yield",
    "keyword",
];

/// Ingredient lists, in the languages whose sites name them in their own.
const INGREDIENT_WORDS: &[&str] = &[
    "ingredi",
    "ingrédi",
    "zutat",
    "skladnik",
    "składnik",
    "malzeme",
    "ингредиент",
];

/// Classes that name a whole recipe card.
fn is_card_token(t: &str) -> bool {
    let generic = contains_ci(t, "recipe")
        && ["card", "container", "box", "plugin", "wrapper"]
            .iter()
            .any(|w| contains_ci(t, w))
        && ![
            "ingredi",
            "instruction",
            "title",
            "name",
            "note",
            "nutrition",
            "video",
            "image",
            "grid",
            "list",
            "related",
        ]
        .iter()
        .any(|w| contains_ci(t, w));
    generic
        || t.eq_ignore_ascii_case("recipe")
        || t.eq_ignore_ascii_case("tasty-recipes")
        || t.eq_ignore_ascii_case("easyrecipe")
        || contains_ci(t, "mv-create-card")
        || contains_ci(t, "wpurp-container")
        || t.eq_ignore_ascii_case("cooked-recipe")
}

fn classify(class: &str, id: &str, data: &str) -> Option<Kinds> {
    if !may_name_a_kind(class) && !may_name_a_kind(id) && !may_name_a_kind(data) {
        return None;
    }
    let mut kinds = Kinds::default();
    let mut push = |k: Kind| {
        if !kinds.list.contains(&k) {
            kinds.list.push(k);
        }
    };
    let tokens = || {
        class
            .split_ascii_whitespace()
            .chain([id, data])
            .filter(|t| !t.is_empty() && !is_modifier(t))
    };
    let card = tokens().any(is_card_token);
    for token in tokens() {
        if INGREDIENT_WORDS.iter().any(|w| contains_ci(token, w)) {
            // A card's class may mention its ingredients; it stays a card.
            if !card {
                push(Kind::Ingredients);
            }
            continue;
        }
        if is_card_token(token) {
            push(Kind::Card);
        }
        if [
            "serving", "yield", "serves", "portion", "racion", "porci", "persone",
        ]
        .iter()
        .any(|w| contains_ci(token, w))
        {
            push(Kind::Servings);
        }
        if ["calori", "kcal"].iter().any(|w| contains_ci(token, w)) {
            push(Kind::Calories);
        }
        if (contains_ci(token, "title") || contains_ci(token, "name"))
            && !NOT_A_TITLE.iter().any(|w| contains_ci(token, w))
        {
            let recipe = contains_ci(token, "recipe");
            if kinds.title.is_none() || recipe {
                kinds.title = Some(Kind::Title { recipe });
            }
        }
    }
    Some(kinds)
}

/// A class that states a modifier of its element (`mv-create-has-ingredient-groups`,
/// `is-ingredients-open`) rather than what the element is.
fn is_modifier(token: &str) -> bool {
    ["has-", "is-", "no-", "with-", "show-", "hide-"]
        .iter()
        .any(|p| token.starts_with(p))
        || ["-has-", "-is-", "-no-", "-with-", "-show-", "-hide-"]
            .iter()
            .any(|p| contains_ci(token, p))
}

/// With [`INGREDIENT_WORDS`], the words one of which every class or id that
/// [`classify`] cares about contains: most elements are turned away after
/// these few searches.
const OTHER_KIND_WORDS: &[&str] = &[
    "recipe",
    "serv",
    "yield",
    "portion",
    "racion",
    "porci",
    "persone",
    "calori",
    "kcal",
    "title",
    "name",
    "mv-create",
    "wpurp",
];

/// Two-letter starts of the words [`classify`] looks for, as a 64K-bit set
/// indexed by the two lowercase bytes.
static KIND_STARTS: [u64; 1024] = {
    let mut set = [0u64; 1024];
    let lists = [INGREDIENT_WORDS, OTHER_KIND_WORDS];
    let mut l = 0;
    while l < lists.len() {
        let mut i = 0;
        while i < lists[l].len() {
            let w = lists[l][i].as_bytes();
            let pair = (w[0] as usize) << 8 | w[1] as usize;
            set[pair / 64] |= 1 << (pair % 64);
            i += 1;
        }
        l += 1;
    }
    set
};

/// Whether `s` may contain one of the words [`classify`] looks for: one
/// table lookup per byte, and the words compared only where one may start.
fn may_name_a_kind(s: &str) -> bool {
    let b = s.as_bytes();
    (1..b.len()).any(|i| {
        let pair =
            (b[i - 1].to_ascii_lowercase() as usize) << 8 | b[i].to_ascii_lowercase() as usize;
        KIND_STARTS[pair / 64] & (1 << (pair % 64)) != 0
            && (starts_any_ci(&b[i - 1..], INGREDIENT_WORDS)
                || starts_any_ci(&b[i - 1..], OTHER_KIND_WORDS))
    })
}

/// Whether `hay` starts with one of `needles` (lowercase ASCII), case ignored.
fn starts_any_ci(hay: &[u8], needles: &[&str]) -> bool {
    needles
        .iter()
        .any(|n| hay.len() >= n.len() && hay[..n.len()].eq_ignore_ascii_case(n.as_bytes()))
}

/// Whether `hay` contains `needle` (lowercase ASCII), ASCII case ignored.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    contains_any_ci(hay, &[needle])
}

/// Whether `hay` contains one of `needles` (lowercase ASCII, not empty),
/// ASCII case ignored. A plain loop: class names are short, too short for
/// a vectorised search to pay for its setup.
fn contains_any_ci(hay: &str, needles: &[&str]) -> bool {
    let h = hay.as_bytes();
    (0..h.len()).any(|i| {
        let c = h[i].to_ascii_lowercase();
        needles.iter().any(|n| {
            let n = n.as_bytes();
            n[0] == c
                && h.len() - i >= n.len()
                && h[i + 1..i + n.len()].eq_ignore_ascii_case(&n[1..])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str, bool)> {
        let page = Page::scan(src);
        page.marks
            .iter()
            .map(|m| (m.kind, &src[m.at..m.end], m.chrome))
            .collect()
    }

    #[test]
    fn head_facts() {
        let page = Page::scan(
            r#"<html><head><title>A &amp; B | Site</title><meta property="og:title" content="A &amp; B">
            <meta property=og:site_name content=Site><link rel="canonical" href="https://x.test/a">
            <script type="application/ld+json">{"@type":"Recipe"}</script></head>
            <body><svg><title>icon</title></svg></body></html>"#,
        );
        assert_eq!(page.title.as_deref(), Some("A & B | Site"));
        assert_eq!(page.og_title.as_deref(), Some("A & B"));
        assert_eq!(page.site_name.as_deref(), Some("Site"));
        assert_eq!(page.canonical.as_deref(), Some("https://x.test/a"));
        assert_eq!(page.ld_scripts, [r#"{"@type":"Recipe"}"#]);
        assert!(!page.microdata);
        assert!(Page::scan(r#"<li itemprop="recipeIngredient">x</li>"#).microdata);
        assert!(Page::scan(r#"<div itemscope itemtype="https://schema.org/Recipe">"#).microdata);
        // A theme's page markup is not recipe microdata.
        assert!(!Page::scan(r#"<body itemscope itemtype="https://schema.org/WebPage"><h1 itemprop="headline">x</h1>"#).microdata);
    }

    #[test]
    fn marks_are_outermost_per_kind() {
        let src = r#"<div class="wprm-recipe-container"><h2 class="wprm-recipe-name">Soup</h2>
            <ul class="wprm-recipe-ingredients"><li class="wprm-recipe-ingredient"><span class="wprm-recipe-ingredient-name">salt</span></li></ul></div>"#;
        let found = kinds(src);
        let summary: Vec<_> = found.iter().map(|(k, s, _)| (*k, s.len())).collect();
        assert_eq!(found[0].0, Kind::Card);
        assert_eq!(found[0].1, src);
        assert_eq!(found[1].0, Kind::Heading);
        assert_eq!(
            found[2],
            (
                Kind::Title { recipe: true },
                r#"<h2 class="wprm-recipe-name">Soup</h2>"#,
                false
            )
        );
        assert_eq!(found[3].0, Kind::Ingredients);
        assert_eq!(found.len(), 4, "{summary:?}");
    }

    #[test]
    fn css_module_names_and_chrome() {
        let found = kinds(
            r#"<aside><ul class="IngredientFilter_list__x1">x</ul></aside><ul class="mt-4 RecipeBody_ingredientItem__x7Q2a">y</ul>"#,
        );
        assert_eq!(found.len(), 2);
        assert!(found[0].2 && !found[1].2);
        assert!(found.iter().all(|(k, _, _)| *k == Kind::Ingredients));
    }

    #[test]
    fn title_classes() {
        let t = |class: &str| {
            let src = format!(r#"<span class="{class}">x</span>"#);
            Page::scan(&src).marks.first().map(|m| m.kind)
        };
        assert_eq!(t("tasty-recipes-title"), Some(Kind::Title { recipe: true }));
        assert_eq!(
            t("mv-create-title mv-create-title-primary"),
            Some(Kind::Title { recipe: false })
        );
        assert_eq!(t("wprm-recipe-group-name"), None);
        assert_eq!(t("site-title"), None);
        assert_eq!(t("comment-author-name"), None);
    }
}
