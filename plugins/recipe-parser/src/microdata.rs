//! schema.org `Recipe` extraction from HTML microdata (`itemscope`,
//! `itemtype`, `itemprop`).
//!
//! Promises: uses the first element whose `itemtype` names a schema.org
//! `Recipe` as the recipe's scope; its `name` is taken only from properties
//! owned by that scope (not from a nested author or review). Ingredient,
//! calorie and yield properties are also looked for in the whole page when
//! there is no `Recipe` scope, so a page that marks up only its ingredient
//! list is still recognised.

use scraper::{ElementRef, Html};

use sluice_plugin::html::{TextOptions, collapse_ws, non_empty, visible_text};

use crate::text::parse_calories;

/// The visible text of an element, as recipe-parser reads it.
fn element_text(el: ElementRef<'_>) -> String {
    visible_text(el, TextOptions::default())
}

/// The recipe fields microdata can give.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MdRecipe {
    /// Whether an element with `itemtype` schema.org `Recipe` exists.
    pub scope_found: bool,
    /// `itemprop="name"` owned by the recipe scope.
    pub name: Option<String>,
    /// `itemprop="recipeIngredient"` (or legacy `ingredients`/`ingredient`).
    pub ingredients: Vec<String>,
    /// `itemprop="recipeYield"`.
    pub servings: Option<String>,
    /// `itemprop="calories"`.
    pub calories: Option<f64>,
}

/// Extracts microdata recipe fields from a parsed page.
pub fn extract(doc: &Html) -> MdRecipe {
    let root = doc.root_element();
    let scope = root.descendent_elements().find(|el| {
        el.attr("itemscope").is_some() && el.attr("itemtype").is_some_and(is_recipe_itemtype)
    });
    let mut out = MdRecipe {
        scope_found: scope.is_some(),
        ..MdRecipe::default()
    };
    let search_root = scope.unwrap_or(root);
    for el in search_root.descendent_elements() {
        let Some(props) = el.attr("itemprop") else {
            continue;
        };
        for prop in props.split_ascii_whitespace() {
            match prop {
                "name" => {
                    if out.name.is_none()
                        && let Some(scope) = scope
                        && owner_scope(el).is_some_and(|o| o.id() == scope.id())
                    {
                        out.name = non_empty(prop_value(el));
                    }
                }
                "recipeIngredient" | "ingredients" | "ingredient" => {
                    push_ingredients(el, &mut out.ingredients)
                }
                "calories" if out.calories.is_none() => {
                    out.calories = parse_calories(&prop_value(el))
                }
                "recipeYield" if out.servings.is_none() => out.servings = non_empty(prop_value(el)),
                _ => {}
            }
        }
    }
    out
}

/// Whether an `itemtype` attribute (a space-separated list of URLs) names
/// schema.org `Recipe`.
fn is_recipe_itemtype(itemtype: &str) -> bool {
    itemtype.split_ascii_whitespace().any(|t| {
        let last = t
            .trim_end_matches('/')
            .rsplit(['/', '#', ':'])
            .next()
            .unwrap_or("");
        last.eq_ignore_ascii_case("recipe")
    })
}

/// The nearest ancestor with `itemscope`: the item a property belongs to.
fn owner_scope(el: ElementRef<'_>) -> Option<ElementRef<'_>> {
    el.ancestors()
        .filter_map(ElementRef::wrap)
        .find(|a| a.attr("itemscope").is_some())
}

/// A property's value, following the microdata rules for where it lives
/// (`content` is honoured on any element, as many sites put it on `<span>`).
fn prop_value(el: ElementRef<'_>) -> String {
    let attr = |name: &str| collapse_ws(el.attr(name).unwrap_or(""));
    if el.attr("content").is_some() {
        return attr("content");
    }
    match el.value().name() {
        "meta" => attr("content"),
        "a" | "area" | "link" => attr("href"),
        "audio" | "embed" | "iframe" | "img" | "source" | "track" | "video" => attr("src"),
        "object" => attr("data"),
        "data" | "meter" => attr("value"),
        _ => element_text(el),
    }
}

/// Adds an ingredient property's value; a `<ul>`/`<ol>` marked as the
/// ingredients contributes one ingredient per `<li>`.
fn push_ingredients(el: ElementRef<'_>, out: &mut Vec<String>) {
    if matches!(el.value().name(), "ul" | "ol") {
        let items: Vec<String> = el
            .descendent_elements()
            .filter(|li| li.value().name() == "li")
            .filter_map(|li| non_empty(element_text(li)))
            .collect();
        if !items.is_empty() {
            out.extend(items);
            return;
        }
    }
    if let Some(v) = non_empty(prop_value(el)) {
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(html: &str) -> MdRecipe {
        extract(&Html::parse_document(html))
    }

    #[test]
    fn full_scope() {
        let r = md(r#"<div itemscope itemtype="https://schema.org/Recipe">
            <h1 itemprop="name">Banana   Bread</h1>
            <div itemprop="author" itemscope itemtype="https://schema.org/Person"><span itemprop="name">Ann</span></div>
            <meta itemprop="recipeYield" content="1 loaf">
            <ul><li itemprop="recipeIngredient">3 ripe bananas</li><li itemprop="recipeIngredient">2 cups <b>flour</b></li></ul>
            <div itemprop="nutrition" itemscope itemtype="https://schema.org/NutritionInformation">
              <span itemprop="calories">196 calories</span></div>
        </div>"#);
        assert!(md_has_scope(&r));
        assert_eq!(r.name.as_deref(), Some("Banana Bread"));
        assert_eq!(r.ingredients, vec!["3 ripe bananas", "2 cups flour"]);
        assert_eq!(r.servings.as_deref(), Some("1 loaf"));
        assert_eq!(r.calories, Some(196.0));
    }

    fn md_has_scope(r: &MdRecipe) -> bool {
        r.scope_found
    }

    #[test]
    fn name_from_nested_item_is_ignored() {
        let r = md(r#"<div itemscope itemtype="http://schema.org/Recipe">
            <div itemprop="author" itemscope itemtype="http://schema.org/Person"><span itemprop="name">Ann</span></div>
            <span itemprop="ingredients">salt</span></div>"#);
        assert_eq!(r.name, None);
        assert_eq!(r.ingredients, vec!["salt"]);
    }

    #[test]
    fn page_level_ingredients_without_scope() {
        let r = md(
            r#"<h1 itemprop="name">Not owned</h1><ul><li itemprop="recipeIngredient">1 egg</li></ul>
            <span itemprop="calories" content="90"></span>"#,
        );
        assert!(!r.scope_found);
        assert_eq!(r.name, None);
        assert_eq!(r.ingredients, vec!["1 egg"]);
        assert_eq!(r.calories, Some(90.0));
    }

    #[test]
    fn list_marked_as_ingredients() {
        let r = md(
            r#"<div itemscope itemtype="https://schema.org/Recipe"><ul itemprop="ingredients"><li>a</li><li> b </li></ul></div>"#,
        );
        assert_eq!(r.ingredients, vec!["a", "b"]);
    }

    #[test]
    fn itemtype_matching() {
        assert!(is_recipe_itemtype("http://schema.org/Recipe"));
        assert!(is_recipe_itemtype("https://schema.org/Recipe/"));
        assert!(is_recipe_itemtype(
            "https://schema.org/Thing https://schema.org/Recipe"
        ));
        assert!(is_recipe_itemtype("http://data-vocabulary.org/Recipe"));
        assert!(!is_recipe_itemtype("https://schema.org/RecipeCollection"));
        assert!(!is_recipe_itemtype("https://schema.org/Article"));
    }

    #[test]
    fn no_microdata() {
        assert_eq!(md("<h1>Hello</h1>"), MdRecipe::default());
    }
}
