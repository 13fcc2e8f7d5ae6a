//! A recipe read from plain HTML, for pages without schema.org markup.
//!
//! Promises, in this order:
//! 1. Recipe-card plugin markup (WP Recipe Maker, Tasty Recipes, Mediavine
//!    Create, Zip Recipes, WP Ultimate Recipe, EasyRecipe, and any element
//!    whose class names a recipe card or container): the ingredient list
//!    inside the card, and the card's own title, servings and calories.
//! 2. Otherwise an ingredient list anywhere in the page's content (an
//!    element whose class or id names ingredients, page chrome excluded),
//!    titled by the page (see [`crate::name`]).
//!
//! An ingredient list yields one ingredient per `<li>`; without list items,
//! one per element marked as an ingredient inside it; without those, one
//! per line of its text. Group headings (a line ending in `:`, or naming
//! the ingredients themselves) are not ingredients. A list whose every item
//! is a link (a filter or tag cloud) is not an ingredient list. No
//! ingredient list, no recipe: a heading alone is never enough.

use sluice_plugin::html::tokenize::{Event, Tag, Walker, visible_text};

use crate::scan::{Kind, Mark, Page, contains_ci};
use crate::text::parse_calories;

/// What the HTML fallback found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Found {
    /// The recipe card holding the ingredients, if any.
    pub card: Option<Mark>,
    /// The ingredient list used.
    pub list: Option<Mark>,
    /// Ingredient lines, in page order.
    pub ingredients: Vec<String>,
    /// Servings or yield as shown, label removed.
    pub servings: Option<String>,
    /// Calories.
    pub calories: Option<f64>,
}

/// Reads the recipe from `src`'s HTML, or `None` when it has no ingredient list.
pub fn extract(src: &str, page: &Page<'_>) -> Option<Found> {
    let cards: Vec<&Mark> = page.marks.iter().filter(|m| m.kind == Kind::Card).collect();
    let card_of = |m: &Mark| {
        cards
            .iter()
            .filter(|c| c.contains(m))
            .max_by_key(|c| c.at)
            .copied()
            .copied()
    };
    let mut best: Option<(Mark, Vec<String>, Option<Mark>)> = None;
    for list in page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::Ingredients && !m.chrome)
    {
        let card = card_of(list);
        if best
            .as_ref()
            .is_some_and(|(_, _, c)| c.is_some() || card.is_none())
        {
            continue;
        }
        let items = ingredients(&src[list.at..list.end]);
        if !items.is_empty() {
            best = Some((*list, items, card));
        }
    }
    // No list marked as ingredients: a heading that says "Ingredients" and
    // the list (or lines) after it.
    if best.is_none() {
        best = page
            .marks
            .iter()
            .filter(|m| m.kind == Kind::Heading && !m.chrome)
            .filter(|m| names_ingredients(&visible_text(&src[m.at..m.end], is_skipped)))
            .find_map(|h| {
                let (end, items) = list_after_heading(src, h)?;
                let list = Mark {
                    kind: Kind::Ingredients,
                    at: h.at,
                    end,
                    chrome: false,
                };
                Some((list, items, card_of(&list)))
            });
    }
    let (list, mut ingredients, card) = best?;
    let scope = |m: &&Mark| match card {
        Some(c) => c.contains(m),
        None => !m.chrome,
    };
    // Lists that follow with no more than a group heading between them are
    // groups of the same recipe.
    let mut last = list;
    for next in page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::Ingredients && m.at >= list.end && scope(m))
    {
        if next.at < last.end {
            continue;
        }
        if visible_text(&src[last.end..next.at], is_skipped)
            .chars()
            .count()
            > MAX_GROUP_GAP
        {
            break;
        }
        ingredients.extend(self::ingredients(&src[next.at..next.end]));
        last = *next;
    }
    // Text around the recipe: the card, or from the last h1 before the list
    // to the list's end.
    let around = match card {
        Some(c) => &src[c.at..c.end],
        None => {
            let from = page
                .marks
                .iter()
                .filter(|m| m.kind == Kind::H1 && m.at < list.at)
                .map(|m| m.at)
                .next_back()
                .unwrap_or(list.at);
            &src[from..last.end]
        }
    };
    // Everything of the recipe: the card, or from there to the first page
    // chrome after the list (nutrition often follows the method).
    let recipe_text = match card {
        Some(_) => around,
        None => {
            let start = around.as_ptr() as usize - src.as_ptr() as usize;
            let limit = src.len().min(last.end + MAX_AFTER_LIST);
            let to = page
                .marks
                .iter()
                .filter(|m| m.chrome && m.at > last.end)
                .map(|m| m.at)
                .next()
                .unwrap_or(limit)
                .min(limit);
            &src[start..src.floor_char_boundary(to)]
        }
    };
    let servings = page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::Servings)
        .filter(scope)
        .find_map(|m| servings(&src[m.at..m.end]))
        .or_else(|| lines(around).iter().find_map(|l| servings_in_text(l)))
        .or_else(|| servings_in_text(&visible_text(around, is_skipped)))
        .or_else(|| servings_by_unit(&visible_text(recipe_text, is_skipped)));
    let calories = page
        .marks
        .iter()
        .filter(|m| m.kind == Kind::Calories)
        .filter(scope)
        .find_map(|m| parse_calories(&visible_text(&src[m.at..m.end], is_skipped)))
        .or_else(|| calories_in_text(&visible_text(recipe_text, is_skipped)));
    Some(Found {
        card,
        list: Some(list),
        ingredients,
        servings,
        calories,
    })
}

/// The most bytes after the ingredient list read for calories and servings
/// on a page without a card.
const MAX_AFTER_LIST: usize = 30_000;

/// The most text (in characters) between two lists of one recipe.
const MAX_GROUP_GAP: usize = 100;

/// Elements whose text is not content: controls and screen-reader copies.
pub fn is_skipped(tag: &Tag<'_>) -> bool {
    if ["button", "select", "option"].iter().any(|n| tag.is(n)) || tag.attr("hidden").is_some() {
        return true;
    }
    tag.attr("class").is_some_and(|c| {
        [
            "sr-only",
            "screen-reader",
            "visually-hidden",
            "visuallyhidden",
        ]
        .iter()
        .any(|w| contains_ci(c, w))
    })
}

/// Skips labels as well: the text of a servings or yield element without
/// its "Servings" label.
fn is_label_or_skipped(tag: &Tag<'_>) -> bool {
    // A label's class ends in it (`field__label`, `wprm-recipe-details-label`);
    // `field--label-inline` is a field that has one.
    let label_class = |t: &str| {
        let t = t.to_ascii_lowercase();
        t.starts_with("label") || t.ends_with("label")
    };
    is_skipped(tag)
        || tag.is("label")
        || tag
            .attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(label_class))
}

/// The ingredient lines of one list.
fn ingredients(list: &str) -> Vec<String> {
    // A heading naming another part of the recipe (Equipment, Method) ends
    // the list.
    let list = match first_stop_heading(list) {
        Some(at) => &list[..at],
        None => list,
    };
    let mut items: Vec<&str> = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let mut marked: Vec<&str> = Vec::new();
    let (mut li_open, mut tr_open) = (0usize, 0usize);
    // Depth of the outermost open marked element below the list's root.
    let mut marked_open: Option<usize> = None;
    for event in Walker::new(list) {
        match event {
            Event::Open { tag, depth } => {
                if tag.is("li") {
                    li_open += 1;
                } else if tag.is("tr") {
                    tr_open += 1;
                }
                if depth > 0
                    && marked_open.is_none()
                    && tag
                        .attr("class")
                        .is_some_and(|c| contains_ci(c, "ingredi") || contains_ci(c, "zutat"))
                {
                    marked_open = Some(depth);
                }
            }
            Event::Close {
                name,
                at,
                end,
                depth,
            } => {
                if name.eq_ignore_ascii_case("li") {
                    li_open -= 1;
                    if li_open == 0 {
                        items.push(&list[at..end]);
                    }
                } else if name.eq_ignore_ascii_case("tr") {
                    tr_open -= 1;
                    if tr_open == 0 {
                        rows.push(&list[at..end]);
                    }
                }
                if marked_open == Some(depth) {
                    marked_open = None;
                    marked.push(&list[at..end]);
                }
            }
            _ => {}
        }
    }
    let spans = [items, rows, marked]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    if spans.is_empty() {
        return lines(list)
            .into_iter()
            .filter(|t| is_ingredient_line(t))
            .collect();
    }
    // A list of links only is navigation (a filter, a tag cloud), even when
    // each link has a count beside it.
    if spans.iter().all(|s| {
        !visible_text(s, |t| is_skipped(t) || t.is("a"))
            .chars()
            .any(char::is_alphabetic)
    }) {
        return Vec::new();
    }
    spans
        .iter()
        .filter(|s| !is_group_heading(s))
        .map(|s| visible_text(s, is_skipped))
        .filter(|t| is_ingredient_line(t))
        .collect()
}

/// Words that head an ingredient list, in the languages of the sites seen.
const INGREDIENT_HEADINGS: &[&str] = &[
    "ingredient",
    "ingrédient",
    "ingrediente",
    "ingredienti",
    "ingrediënten",
    "zutaten",
    "składniki",
    "skladniki",
    "malzemeler",
    "ингредиенты",
    "材料",
    "配料",
    "用料",
    "재료",
    "you'll need",
    "you’ll need",
    "you will need",
    "what you need",
];

/// Whether a heading's text names an ingredient list ("Ingredients",
/// "Ingrédients :", "材料 (2人分)").
///
/// The word must open the heading, and what follows it be at most one word
/// or a quantity ("for 4 people", "(2人分)"): "Ingredients we always keep
/// on hand" heads an article's list, not a recipe's.
pub fn names_ingredients(heading: &str) -> bool {
    let lower = heading.to_lowercase();
    let lower = lower.trim_start_matches(|c: char| !c.is_alphabetic());
    heading.chars().count() <= 40
        && INGREDIENT_HEADINGS.iter().any(|w| {
            lower.strip_prefix(w).is_some_and(|rest| {
                let rest = rest.trim_start_matches(char::is_alphabetic);
                rest.split_whitespace().count() <= 1 || rest.chars().any(|c| c.is_ascii_digit())
            })
        })
}

/// Words of a heading that ends the ingredients: another part of the recipe.
const STOP_HEADINGS: &[&str] = &[
    "equipment",
    "tools",
    "utensil",
    "instruction",
    "direction",
    "method",
    "steps",
    "preparation",
    "notes",
    "nutrition",
    "ausrüstung",
    "zubereitung",
    "préparation",
    "ustensile",
    "preparación",
    "procedimento",
    "preparazione",
    "bereiding",
    "przygotowanie",
    "приготовление",
    "作り方",
    "做法",
    "步骤",
    "만드는",
];

/// Whether a heading's text starts another part of the recipe.
fn ends_ingredients(heading: &str) -> bool {
    let lower = heading.to_lowercase();
    heading.chars().count() <= 40 && STOP_HEADINGS.iter().any(|w| lower.contains(w))
}

/// The most bytes looked at after an "Ingredients" heading for its list.
const MAX_AFTER_HEADING: usize = 20_000;

/// The ingredients after heading `h`: every list (`<ul>`, `<ol>`, or a
/// table) up to the next heading of the same or a higher level, skipping
/// sub-headings (groups); without a list, the lines of text up to that
/// heading. Returns where they end, and the lines.
fn list_after_heading(src: &str, h: &Mark) -> Option<(usize, Vec<String>)> {
    let level = src.as_bytes().get(h.at + 2).copied().unwrap_or(b'6');
    let window = &src[h.end..src.floor_char_boundary(src.len().min(h.end + MAX_AFTER_HEADING))];
    let mut items = Vec::new();
    let mut end = h.end;
    let mut stop = window.len();
    let mut list_open: Option<(usize, usize)> = None;
    let mut lists = 0;
    for event in Walker::new(window) {
        match event {
            Event::Open { tag, depth } => {
                let heading = matches!(tag.name.as_bytes(), [b'h' | b'H', b'1'..=b'6']);
                if heading && tag.name.as_bytes()[1] <= level {
                    stop = tag.at;
                    break;
                }
                if list_open.is_none() && ["ul", "ol", "table"].iter().any(|n| tag.is(n)) {
                    list_open = Some((tag.at, depth));
                }
            }
            Event::Close {
                at,
                end: close,
                depth,
                ..
            } if list_open == Some((at, depth)) => {
                list_open = None;
                lists += 1;
                items.extend(ingredients(&window[at..close]));
                end = h.end + close;
            }
            _ => {}
        }
    }
    if items.is_empty() && lists == 0 {
        // No list: the lines up to the next heading, as on plain blogs.
        items = lines(&window[..stop])
            .into_iter()
            .filter(|l| is_ingredient_line(l))
            .collect();
        end = h.end + stop;
    }
    (!items.is_empty()).then_some((end, items))
}

/// Class words of a heading over a group of ingredients.
const HEADING_WORDS: &[&str] = &["head", "group", "label", "section", "title", "subtitle"];

/// Whether an item is a group heading: all of its text sits in an element
/// whose class says heading (`cooked-heading`, `ERSSectionHead`,
/// `wpurp-recipe-ingredient-group`) or in a heading or bold element.
fn is_group_heading(item: &str) -> bool {
    let text = visible_text(item, is_skipped);
    if text.is_empty() {
        return false;
    }
    let mut headings = Vec::new();
    for event in Walker::new(item) {
        if let Event::Close { name, at, end, .. } = event {
            let tag_src = &item[at..end];
            let Some(Event::Open { tag, .. }) = Walker::new(tag_src).next() else {
                continue;
            };
            let by_class = tag.attr("class").is_some_and(|c| {
                HEADING_WORDS.iter().any(|w| contains_ci(c, w))
                    && !contains_ci(c, "ingredient-name")
            });
            let by_name = matches!(name.as_bytes(), [b'h' | b'H', b'1'..=b'6'])
                || ["strong", "b"].iter().any(|n| name.eq_ignore_ascii_case(n));
            if by_class || by_name {
                headings.push(tag_src);
            }
        }
    }
    headings.iter().any(|h| visible_text(h, is_skipped) == text)
}

/// Calories written out in a card's text: "Calories: 356", "Calories 356",
/// "356 kcal".
fn calories_in_text(text: &str) -> Option<f64> {
    let lower = text.to_lowercase();
    for word in ["calories", "calorie", "kcal", "cal"] {
        for (i, _) in lower.match_indices(word) {
            let after = lower[i + word.len()..].trim_start_matches([':', ' ']);
            let number: String = after
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
                .collect();
            if let Some(v) = parse_calories(&number) {
                return Some(v);
            }
            let before = lower[..i].trim_end();
            let digits = before
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_digit() || *c == ',' || *c == '.')
                .last()
                .map(|(j, _)| j);
            if let Some(j) = digits
                && let Some(v) = parse_calories(&before[j..])
            {
                return Some(v);
            }
        }
    }
    None
}

/// Where the first heading that ends the ingredients starts in `list`.
fn first_stop_heading(list: &str) -> Option<usize> {
    Walker::new(list).find_map(|e| match e {
        Event::Close { name, at, end, .. }
            if matches!(name.as_bytes(), [b'h' | b'H', b'1'..=b'6'])
                && ends_ingredients(&visible_text(&list[at..end], is_skipped)) =>
        {
            Some(at)
        }
        _ => None,
    })
}

/// One line per block or `<br>` of a list without items; headings dropped.
fn lines(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut hidden: Option<usize> = None;
    let mut flush = |line: &mut String| {
        let text = sluice_plugin::html::collapse_ws(line);
        if !text.is_empty() {
            out.push(text);
        }
        line.clear();
    };
    for event in Walker::new(list) {
        match event {
            Event::Open { tag, depth } if hidden.is_none() => {
                let heading = matches!(tag.name.as_bytes(), [b'h' | b'H', b'1'..=b'6']);
                if heading
                    || is_skipped(&tag)
                    || ["script", "style", "svg", "template", "noscript"]
                        .iter()
                        .any(|n| tag.is(n))
                {
                    hidden = Some(depth);
                } else if ["br", "p", "div", "li", "tr"].iter().any(|n| tag.is(n)) {
                    flush(&mut line);
                }
            }
            Event::Close { name, depth, .. } => {
                if hidden == Some(depth) {
                    hidden = None;
                } else if hidden.is_none()
                    && ["p", "div", "li", "tr"]
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n))
                {
                    flush(&mut line);
                }
            }
            Event::Text(t) if hidden.is_none() => {
                line.push_str(&sluice_plugin::html::decode_entities(t));
            }
            _ => {}
        }
    }
    flush(&mut line);
    out
}

/// Whether a line is an ingredient rather than a heading over some.
fn is_ingredient_line(line: &str) -> bool {
    if line.is_empty() || line.ends_with(':') {
        return false;
    }
    let words = line.split_whitespace().count();
    let names_the_list = words <= 2
        && ["ingredi", "zutaten", "ингредиент", "材料", "配料", "用料"]
            .iter()
            .any(|w| line.to_lowercase().contains(w));
    !names_the_list
}

/// The servings text of one element: labels and controls left out, and a
/// leading "Yield:" style label removed.
fn servings(src: &str) -> Option<String> {
    let text = visible_text(src, is_label_or_skipped);
    // "（2人分）": a figure in brackets, brackets dropped.
    let text = match (text.chars().next(), text.chars().next_back()) {
        (Some('(' | '（' | '['), Some(')' | '）' | ']')) => text
            [text.char_indices().nth(1).map_or(0, |(i, _)| i)..]
            .trim_end_matches([')', '）', ']'])
            .trim(),
        _ => text.as_str(),
    };
    let text = strip_lead_words(&strip_servings_word(text));
    let text = match text.split_once(':') {
        Some((label, rest))
            if label.split_whitespace().count() <= 3
                && !label.chars().any(|c| c.is_ascii_digit())
                && !rest.trim().is_empty() =>
        {
            rest.trim().to_string()
        }
        _ => text,
    };
    (!text.is_empty() && text.chars().any(|c| c.is_alphanumeric())).then_some(text)
}

/// Words that label a servings figure ("Servings 6 bowls", "Yields6 Servings").
const SERVINGS_WORDS: &[&str] = &[
    "servings",
    "serving",
    "yields",
    "yield",
    "portions",
    "portionen",
    "porciones",
    "porções",
    "portions:",
];

/// A servings figure written out in a line of text: "Serves: 4", "Yield 6
/// servings", "Makes 4 burgers". The words after the number are its unit
/// when at most two words end the line or a clause ("4 | Time: 1 hour" is
/// just "4").
fn servings_in_text(line: &str) -> Option<String> {
    let lower = line.to_lowercase();
    for label in [
        "serves",
        "servings",
        "serving",
        "yields",
        "yield",
        "makes",
        "portionen",
        "porciones",
        "raciones",
        "porzioni",
        "porcji",
        "porcje",
        "personnes",
        "persone",
        "personas",
        "porções",
        "порций",
    ] {
        for (i, _) in lower.match_indices(label) {
            if lower[..i]
                .chars()
                .next_back()
                .is_some_and(char::is_alphabetic)
                || i + label.len() > line.len()
            {
                continue;
            }
            let rest = line[i + label.len()..].trim_start_matches([':', ' ', '\u{a0}']);
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            if !digits.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let after = rest[digits.len()..].trim_start();
            let words: Vec<&str> = after
                .split_whitespace()
                .take_while(|w| w.chars().all(char::is_alphabetic))
                .take(3)
                .collect();
            let servings_word = words
                .first()
                .is_some_and(|w| SERVINGS_UNITS.contains(&w.to_lowercase().as_str()));
            let unit_ends_clause = servings_word
                || !words.is_empty() && words.len() <= 2 && {
                    let tail = after.split_whitespace().nth(words.len());
                    tail.is_none_or(|t| !t.starts_with(|c: char| c.is_alphanumeric()))
                };
            let digits = digits.trim_end_matches('-').to_string();
            return Some(if servings_word {
                format!("{digits} {}", words[0])
            } else if unit_ends_clause {
                format!("{digits} {}", words.join(" "))
            } else {
                digits
            });
        }
    }
    None
}

/// Units that say a number counts servings, in the languages of the sites seen.
const SERVINGS_UNITS: &[&str] = &[
    "servings",
    "serving",
    "people",
    "persons",
    "personen",
    "personnes",
    "persone",
    "porciones",
    "raciones",
    "portionen",
    "porzioni",
    "porções",
    "porcje",
    "porcji",
    "порций",
    "порции",
    "порция",
    "人分",
    "人前",
    "인분",
];

/// A servings figure known by its unit wherever it stands: "6 personen",
/// "4 Portionen", "2人分".
fn servings_by_unit(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        return None;
    }
    for unit in SERVINGS_UNITS {
        for (i, _) in lower.match_indices(unit) {
            if lower[i + unit.len()..]
                .chars()
                .next()
                .is_some_and(char::is_alphabetic)
            {
                continue;
            }
            let before = lower[..i].trim_end();
            let digits = before.len()
                - before
                    .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                    .len();
            if digits == 0 {
                continue;
            }
            let number = &text[before.len() - digits..before.len()];
            let unit_text = &text[i..i + unit.len()];
            let joiner = if i == before.len() { "" } else { " " };
            return Some(format!("{number}{joiner}{unit_text}"));
        }
    }
    None
}

/// `text` without up to two leading words before its first digit ("für 4
/// Portionen", "Serves 4", "Makes about 12").
fn strip_lead_words(text: &str) -> String {
    match text.find(|c: char| c.is_ascii_digit()) {
        Some(i) if i > 0 => {
            let lead = &text[..i];
            if lead.split_whitespace().count() <= 2
                && lead.chars().all(|c| c.is_alphabetic() || c.is_whitespace())
            {
                text[i..].to_string()
            } else {
                text.to_string()
            }
        }
        _ => text.to_string(),
    }
}

/// `text` without a leading servings label word.
fn strip_servings_word(text: &str) -> String {
    let lower = text.to_lowercase();
    for word in SERVINGS_WORDS {
        if let Some(rest) = lower.strip_prefix(word)
            && rest.chars().next().is_some_and(|c| !c.is_alphabetic())
        {
            let cut = text.len() - rest.len();
            let rest = text[cut..].trim_start_matches([':', ' ', '\u{a0}']);
            if rest.chars().any(char::is_alphanumeric) {
                return rest.to_string();
            }
        }
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(src: &str) -> Option<Found> {
        extract(src, &Page::scan(src))
    }

    #[test]
    fn list_items_with_spans_and_group_headings() {
        let src = r#"<div class="recipe-ingredients"><h4>For the dough</h4><ul>
            <li><input type="checkbox"><span class="amount">1</span> <span class="unit">cup</span> flour
            <li><strong>For the glaze:</strong>
            <li>2&nbsp;eggs <button>Buy</button></li></ul></div>"#;
        assert_eq!(found(src).unwrap().ingredients, ["1 cup flour", "2 eggs"]);
    }

    #[test]
    fn marked_children_then_lines() {
        let src = r#"<div id="ingredients"><p class="ingredient">1 egg</p><p class="ingredient">salt</p></div>"#;
        assert_eq!(found(src).unwrap().ingredients, ["1 egg", "salt"]);
        let src = r#"<div class="zutaten"><h3>Zutaten</h3><p>200 g Mehl<br>2 Eier<br></p><p>Salz</p></div>"#;
        assert_eq!(
            found(src).unwrap().ingredients,
            ["200 g Mehl", "2 Eier", "Salz"]
        );
    }

    #[test]
    fn link_lists_and_chrome_are_not_ingredients() {
        assert_eq!(
            found(
                r#"<ul class="ingredient-filter"><li><a href="/c">Chicken</a></li><li><a href="/b">Beef</a></li></ul>"#
            ),
            None
        );
        assert_eq!(
            found(r#"<nav><ul class="ingredients"><li>x</li></ul></nav>"#),
            None
        );
        assert_eq!(found("<h1>Soup</h1><p>Just a story.</p>"), None);
    }

    #[test]
    fn card_scopes_servings_and_calories() {
        let src = r#"<div class="servings">Servings: 99</div>
            <div class="tasty-recipes"><h2 class="tasty-recipes-title">Pie</h2>
            <span class="tasty-recipes-yield"><span class="tasty-recipes-label">Yield:</span> 8 slices <button>2x</button></span>
            <div class="tasty-recipes-ingredients"><ul><li>1 crust</li></ul></div>
            <span class="tasty-recipes-calories">Calories: 1,210 kcal</span></div>"#;
        let f = found(src).unwrap();
        assert_eq!(f.servings.as_deref(), Some("8 slices"));
        assert_eq!(f.calories, Some(1210.0));
        assert!(f.card.is_some());
    }

    #[test]
    fn label_without_colon_and_inline_label() {
        assert_eq!(
            servings("<span>Yield: 12 cookies</span>").as_deref(),
            Some("12 cookies")
        );
        assert_eq!(servings("<span>4</span>").as_deref(), Some("4"));
        assert_eq!(
            servings("<span class=label>Servings</span>").as_deref(),
            None
        );
        assert_eq!(
            servings("<span><b>Yields</b><a>6 Servings</a></span>").as_deref(),
            Some("6 Servings")
        );
        assert_eq!(
            servings("<div>Servings <span>6</span> bowls</div>").as_deref(),
            Some("6 bowls")
        );
        assert_eq!(servings("<div>Serves 4</div>").as_deref(), Some("4"));
        assert_eq!(
            servings("<div>für <span>4 Portionen</span><button>+</button></div>").as_deref(),
            Some("4 Portionen")
        );
        assert_eq!(
            servings_in_text("Serves: 4 | Time: 1 hour").as_deref(),
            Some("4")
        );
        assert_eq!(
            servings_in_text("Yield 6 servings").as_deref(),
            Some("6 servings")
        );
        assert_eq!(servings_in_text("Observes 4").as_deref(), None);
        assert!(names_ingredients("Ingredients"));
        assert!(names_ingredients("Zutaten für 4 Personen"));
        assert!(names_ingredients("材料 （2人分）"));
        assert!(!names_ingredients("Ingredients we always keep on hand"));
        assert!(!names_ingredients("Filter by ingredient"));
        assert_eq!(
            servings_in_text("Makes 4 burgers").as_deref(),
            Some("4 burgers")
        );
        assert_eq!(
            servings_in_text("Serves 4 Prep 10 min").as_deref(),
            Some("4")
        );
        assert_eq!(servings("<span>（2人分）</span>").as_deref(), Some("2人分"));
        assert_eq!(
            servings_by_unit("Voor 6 personen · 2,5 uur").as_deref(),
            Some("6 personen")
        );
        assert_eq!(servings_by_unit("材料 （2人分）").as_deref(), Some("2人分"));
        assert_eq!(servings_by_unit("for 6 peoples"), None);
    }

    #[test]
    fn group_headings_are_not_ingredients() {
        assert!(is_group_heading(
            r#"<li class="ERSSectionHead">Optional</li>"#
        ));
        assert!(is_group_heading(
            r#"<li><div class="wpurp-recipe-ingredient-group">Glaze</div></li>"#
        ));
        assert!(is_group_heading("<li><strong>For the sauce</strong></li>"));
        assert!(!is_group_heading(
            r#"<li class="wprm-recipe-ingredient"><span class="wprm-recipe-ingredient-name">salt</span></li>"#
        ));
        assert!(!is_group_heading("<li><strong>2</strong> eggs</li>"));
    }

    #[test]
    fn calories_in_card_text() {
        assert_eq!(
            calories_in_text("Nutrition Facts Calories 356 Calories from Fat 144"),
            Some(356.0)
        );
        assert_eq!(
            calories_in_text("Per serving: 1,210 kcal, 20 g fat"),
            Some(1210.0)
        );
        assert_eq!(calories_in_text("Serve with love"), None);
    }
}
