//! The recipe's name when the page's structured data gives none.
//!
//! Promises:
//! - Sources, in order: the recipe card's own title (a title- or
//!   name-classed element in the card before its ingredients, else its
//!   first heading that does not name the ingredients); the page's
//!   `<h1>` (one that matches `og:title` or `<title>` first, else the last
//!   one before the ingredient list, else the first); an element whose
//!   class names a recipe title; `og:title`; `<title>`.
//! - Implausible names are passed over: no letter (`"2"`, `"4.8/5"`),
//!   breadcrumbs (`Home › Recipes`), widget and navigation labels
//!   ("Featured in", "Jump to Recipe", "Ingredients"), the site's own name,
//!   and anything longer than 200 characters.
//! - A site suffix (` | Site`, ` - Blog`, ` Recipe - (4.8/5)`) is cut from
//!   `og:title`/`<title>` only when what remains matches the page's `<h1>`
//!   or card title, or when the suffix is the site's name (`og:site_name`,
//!   or the URL's host).
//! - The page's own characters are kept (’ stays ’); only whitespace is
//!   collapsed.

use sluice_plugin::html::tokenize::visible_text;

use crate::fallback::is_skipped;
use crate::scan::{Kind, Mark, Page};

/// Words that label page furniture rather than name a recipe (compared
/// whole, case ignored; a name may not start with the multi-word ones).
const NOT_NAMES: &[&str] = &[
    "featured in",
    "as seen in",
    "as featured in",
    "popular recipes",
    "popular posts",
    "related recipes",
    "you may also like",
    "you might also like",
    "recent posts",
    "latest recipes",
    "more recipes",
    "jump to recipe",
    "print recipe",
    "skip to content",
    "leave a comment",
    "leave a reply",
    "ingredients",
    "instructions",
    "directions",
    "method",
    "steps",
    "preparation",
    "equipment",
    "tips",
    "nutrition",
    "notes",
    "recipe",
    "recipes",
    "comments",
    "search",
    "menu",
    "home",
    "reviews",
    "share",
    "subscribe",
];

/// Chooses the name from the page. `list` is the ingredient list, `card`
/// the recipe card holding it.
pub fn choose(
    src: &str,
    page: &Page<'_>,
    card: Option<&Mark>,
    list: Option<&Mark>,
) -> Option<String> {
    let site = site_names(page);
    let ok = |name: &String| plausible(name, &site);
    let text = |m: &Mark| visible_text(&src[m.at..m.end], is_skipped);
    let before_list = |m: &&Mark| list.is_none_or(|l| m.at < l.at);

    let inside_card =
        |m: &&Mark| card.is_some_and(|c| c.contains(m)) && list.is_none_or(|l| !l.contains(m));
    // A card's title comes before its ingredients.
    let titles: Vec<&Mark> = page
        .marks
        .iter()
        .filter(inside_card)
        .filter(before_list)
        .filter(|m| matches!(m.kind, Kind::Title { .. }))
        .collect();
    // A title wrapper (title plus rating) yields to the title inside it.
    let card_title = titles
        .iter()
        .filter(|t| !titles.iter().any(|o| o.at > t.at && t.contains(o)))
        .map(|m| text(m))
        .find(ok);
    if card_title.is_some() {
        return card_title;
    }

    // An untitled card's first heading, unless it names the list ("You'll
    // need" right above the ingredients).
    let card_heading = page
        .marks
        .iter()
        .filter(inside_card)
        .filter(before_list)
        .filter(|m| matches!(m.kind, Kind::H1 | Kind::Heading))
        .map(text)
        .find(|t| ok(t) && !crate::fallback::names_ingredients(t));
    if card_heading.is_some() {
        return card_heading;
    }

    let h1s: Vec<(&Mark, String)> = page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::H1 && !m.chrome)
        .map(|m| (m, text(m)))
        .filter(|(_, t)| ok(t))
        .collect();
    let titles = [page.og_title.as_deref(), page.title.as_deref()];
    let matching = h1s.iter().find(|(_, h1)| {
        titles
            .iter()
            .flatten()
            .any(|t| strip_suffix_matching(t, h1).is_some())
    });
    if let Some((_, h1)) = matching {
        return Some(h1.clone());
    }

    let h1 = h1s
        .iter()
        .rev()
        .find(|(m, _)| before_list(m))
        .or_else(|| h1s.first())
        .map(|(_, t)| t.clone());
    if h1.is_some() {
        return h1;
    }

    let recipe_title = page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::Title { recipe: true } && !m.chrome)
        .filter(before_list)
        .map(text)
        .rfind(ok);
    if recipe_title.is_some() {
        return recipe_title;
    }

    titles
        .into_iter()
        .flatten()
        .map(|t| strip_site_suffix(t, &site))
        .find(ok)
}

/// The names the site goes by: `og:site_name` and the URL's host, reduced
/// to lowercase letters and digits.
fn site_names(page: &Page<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(name) = &page.site_name {
        names.push(squash(name));
    }
    if let Some(url) = page.canonical.as_deref().or(page.og_url.as_deref()) {
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split(['/', ':', '?', '#'])
            .next()
            .unwrap_or("");
        let host = host.strip_prefix("www.").unwrap_or(host);
        if let Some(label) = host.split('.').next().filter(|l| !l.is_empty()) {
            names.push(squash(label));
        }
        names.push(squash(host));
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Lowercase letters and digits only: how names are compared.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `name` can be a recipe's name.
pub fn plausible(name: &str, site: &[String]) -> bool {
    let len = name.chars().count();
    if !(2..=200).contains(&len) || !name.chars().any(char::is_alphabetic) {
        return false;
    }
    if name.contains(['›', '»'])
        || name.matches(" > ").count() >= 1
        || name.matches(" / ").count() >= 2
    {
        return false;
    }
    let lower = name.to_lowercase();
    let bare = lower.trim_end_matches([':', '!', '.']).trim();
    if NOT_NAMES
        .iter()
        .any(|n| bare == *n || (n.contains(' ') && bare.starts_with(n)))
    {
        return false;
    }
    let squashed = squash(name);
    !site.contains(&squashed)
}

/// Separators between a page title and its site suffix.
const SEPARATORS: &[&str] = &[
    " | ", " - ", " – ", " — ", " • ", " · ", " :: ", " » ", " ~ ", " // ",
];

/// `title` cut at a separator so that what remains matches `anchor`
/// (letters and digits compared, case ignored; a trailing "Recipe" is
/// allowed), or `None`.
fn strip_suffix_matching<'t>(title: &'t str, anchor: &str) -> Option<&'t str> {
    let want = squash(anchor);
    if want.is_empty() {
        return None;
    }
    let same = |head: &str| {
        let head = squash(head);
        head == want || head.strip_suffix("recipe").is_some_and(|h| h == want)
    };
    if same(title) {
        return Some(title);
    }
    cut_points(title)
        .map(|i| &title[..i])
        .find(|head| same(head))
}

/// `title` without a suffix that names the site, else `title` unchanged.
fn strip_site_suffix(title: &str, site: &[String]) -> String {
    for i in cut_points(title) {
        let tail = squash(&title[i..]);
        if site
            .iter()
            .any(|s| !s.is_empty() && (tail == *s || tail.starts_with(s.as_str())))
        {
            return title[..i].trim().to_string();
        }
    }
    title.to_string()
}

/// Offsets where a separator starts, from the last to the first.
fn cut_points(title: &str) -> impl Iterator<Item = usize> + '_ {
    let mut points: Vec<usize> = SEPARATORS
        .iter()
        .flat_map(|sep| title.match_indices(sep).map(|(i, _)| i))
        .filter(|&i| i > 0)
        .collect();
    points.sort_unstable();
    points.into_iter().rev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(src: &str) -> Option<String> {
        let page = Page::scan(src);
        let found = crate::fallback::extract(src, &page);
        let card = found.as_ref().and_then(|f| f.card);
        let list = found.as_ref().and_then(|f| f.list);
        choose(src, &page, card.as_ref(), list.as_ref())
    }

    const LIST: &str = r#"<ul class="ingredients"><li>1 egg</li></ul>"#;

    #[test]
    fn implausible_names() {
        let site = vec!["simplekitchen".to_string()];
        for bad in [
            "2",
            "4.8/5",
            "Home › Recipes › Soups",
            "Featured in:",
            "Jump to Recipe",
            "Simple Kitchen",
            "  ",
        ] {
            assert!(!plausible(bad, &site), "{bad}");
        }
        for good in [
            "Grandma’s Apple Pie",
            "Tarte Tatin",
            "麻婆豆腐",
            "7-Layer Dip",
            "Pasta e fagioli",
        ] {
            assert!(plausible(good, &site), "{good}");
        }
    }

    #[test]
    fn h1_over_og_title_and_suffixes() {
        let src = format!(
            r#"<head><title>Lemon Bars Recipe - (4.8/5) | Bakes</title><meta property="og:title" content="Lemon Bars | Bakes"></head>
            <header><h1>Bakes</h1></header><span>2</span><h1>Lemon Bars</h1>{LIST}"#
        );
        assert_eq!(name(&src).as_deref(), Some("Lemon Bars"));
        // Without an h1 the og:title is used, cut only at the site's name.
        let src = format!(
            r#"<meta property="og:site_name" content="Bakes"><meta property="og:title" content="Lemon Bars – Tart &amp; Sweet | Bakes">{LIST}"#
        );
        assert_eq!(name(&src).as_deref(), Some("Lemon Bars – Tart & Sweet"));
        let src = format!(r#"<meta property="og:title" content="Lemon Bars | Bakes">{LIST}"#);
        assert_eq!(name(&src).as_deref(), Some("Lemon Bars | Bakes"));
    }

    #[test]
    fn suffix_matching() {
        assert_eq!(
            strip_suffix_matching("Lemon Bars Recipe - (4.8/5)", "Lemon Bars"),
            Some("Lemon Bars Recipe")
        );
        assert_eq!(
            strip_suffix_matching("Lemon Bars | Site", "Lemon bars"),
            Some("Lemon Bars")
        );
        assert_eq!(strip_suffix_matching("Lemon Bars | Site", "Pie"), None);
        let site = vec!["bakesexample".to_string(), "bakes".to_string()];
        assert_eq!(strip_site_suffix("Pie • Bakes.example", &site), "Pie");
        assert_eq!(strip_site_suffix("Pie - Crust", &site), "Pie - Crust");
    }

    #[test]
    fn card_title_wins_and_keeps_its_characters() {
        let src = format!(
            r#"<h1>Our blog</h1><div class="wprm-recipe-container"><h2 class="wprm-recipe-name">Grandma&#8217;s Pie</h2>{LIST}</div>"#
        );
        assert_eq!(name(&src).as_deref(), Some("Grandma’s Pie"));
        let src = format!(r#"<div class="mv-create-card"><h2>Bread</h2>{LIST}</div>"#);
        assert_eq!(name(&src).as_deref(), Some("Bread"));
    }
}
