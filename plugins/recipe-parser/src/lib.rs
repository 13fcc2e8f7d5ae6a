//! Recipe parser plugin: turns a recipe web page (HTML) into recipe JSON.
//!
//! Output, on the default route with the input's key and no headers, is the
//! compact JSON object
//! `{"name": str, "calories": number|null, "ingredients": [str], "servings": str|null, "url": str|null}`.
//!
//! Promises:
//! - Recipe data comes from schema.org JSON-LD first (any number of scripts,
//!   `@graph`, top-level arrays, `@type` arrays, nested `mainEntity`), then
//!   from schema.org microdata, field by field: a field missing from JSON-LD
//!   is filled from microdata when microdata has it.
//! - `name` falls back to `og:title`, then the first `<h1>`, then `<title>`.
//! - `url` is the JSON-LD recipe's `url`, else `<link rel="canonical">`,
//!   else `og:url`, else the input header named `url` (any case).
//! - `calories` is a number parsed from `nutrition.calories` / microdata
//!   `calories` ("551 kcal", "1,200 calories", "551.5" ...); whole numbers are
//!   written without a fraction.
//! - Names and ingredients have HTML entities decoded (also inside JSON-LD
//!   strings), stray tags removed and whitespace trimmed and collapsed.
//! - A page is a recipe only if it has a JSON-LD `Recipe`, a microdata
//!   `Recipe` item, or microdata-marked ingredients; anything else (even a
//!   page with a heading) fails with an `invalid` error
//!   "no recipe found in page". Non-UTF-8 input is decoded lossily.
//! - Takes no parameters: `init` rejects any key, naming it.

mod fallback;
mod jsonld;
mod microdata;
mod name;
mod scan;
mod text;

use scraper::Html;
use serde::{Serialize, Serializer};
use sluice_plugin::html::{collapse_ws, non_empty};
use sluice_plugin::log::{Level, log};
use sluice_plugin::{Guest, Input, Output, Params, ProcessError, invalid};

use crate::scan::Page;

/// The message of the error returned for pages without a recipe.
pub const NO_RECIPE: &str = "no recipe found in page";

/// A parsed recipe, serialised as the plugin's output value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    /// The recipe's name.
    pub name: String,
    /// Calories (per serving, as the page states them), if known.
    #[serde(serialize_with = "serialize_number")]
    pub calories: Option<f64>,
    /// Ingredient lines, in page order.
    pub ingredients: Vec<String>,
    /// The recipe's yield as the page words it ("4 servings", "12").
    pub servings: Option<String>,
    /// The recipe's URL.
    pub url: Option<String>,
}

/// Writes whole numbers as JSON integers (`551`, not `551.0`).
fn serialize_number<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match *v {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            s.serialize_i64(f as i64)
        }
        Some(f) if f.is_finite() => s.serialize_f64(f),
        _ => s.serialize_none(),
    }
}

/// Parses a recipe page. `header_url` is the URL to fall back on when the
/// page names none itself.
pub fn parse_recipe(html: &str, header_url: Option<&str>) -> Result<Recipe, String> {
    parse_recipe_noted(html, header_url, &mut Vec::new())
}

/// Like [`parse_recipe`], also reporting recoverable problems (such as a
/// JSON-LD script that is not valid JSON) in `notes`.
pub fn parse_recipe_noted(
    html: &str,
    header_url: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Recipe, String> {
    let html = html.strip_prefix('\u{feff}').unwrap_or(html);
    let page = Page::scan(html);
    let ld = jsonld::find_recipe(&page.ld_scripts, notes);
    // Microdata needs the element tree; only pages that have some pay for it.
    let md = if page.microdata {
        microdata::extract(&Html::parse_document(html))
    } else {
        microdata::MdRecipe::default()
    };
    let structured = ld.is_some() || md.scope_found || !md.ingredients.is_empty();
    let ld_url = ld.as_ref().and_then(|ld| ld.url.clone());
    let (name, mut ingredients, mut servings, mut calories) = if structured {
        let ld = ld.unwrap_or_default();
        let name = ld
            .name
            .or(md.name)
            .or_else(|| name::choose(html, &page, None, None));
        let ingredients = if ld.ingredients.is_empty() {
            md.ingredients
        } else {
            ld.ingredients
        };
        (
            name,
            ingredients,
            ld.servings.or(md.servings),
            ld.calories.or(md.calories),
        )
    } else {
        let found = fallback::extract(html, &page).ok_or_else(|| NO_RECIPE.to_string())?;
        let name = name::choose(html, &page, found.card.as_ref(), found.list.as_ref());
        (name, found.ingredients, found.servings, found.calories)
    };
    // Structured data without ingredients (a stub) borrows the card's.
    if structured
        && ingredients.is_empty()
        && let Some(found) = fallback::extract(html, &page)
    {
        ingredients = found.ingredients;
        servings = servings.or(found.servings);
        calories = calories.or(found.calories);
    }
    let name = name.ok_or_else(|| "recipe found in page but it has no name".to_string())?;
    let header_url = header_url.map(collapse_ws).and_then(non_empty);
    Ok(Recipe {
        name,
        calories,
        ingredients,
        servings,
        url: ld_url.or(page.canonical).or(page.og_url).or(header_url),
    })
}

/// Checks the plugin's parameters: it takes none.
fn check_params(params: &[(String, String)]) -> Result<(), String> {
    Params::new("recipe-parser", &[], params.to_vec()).map(drop)
}

/// The URL given in the record's `url` header, if any and if UTF-8.
fn header_url(rec: &Input) -> Option<&str> {
    rec.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("url"))
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// The plugin's export implementation.
struct RecipeParser;

impl Guest for RecipeParser {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        check_params(&params)
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let html = String::from_utf8_lossy(&rec.value);
        let mut notes = Vec::new();
        let result = parse_recipe_noted(&html, header_url(&rec), &mut notes);
        for note in notes {
            log(Level::Debug, &note, &[]);
        }
        let recipe = result.map_err(invalid)?;
        let value = serde_json::to_vec(&recipe)
            .map_err(|e| invalid(format!("cannot encode recipe: {e}")))?;
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value,
            headers: Vec::new(),
        }])
    }
}

sluice_plugin::export!(RecipeParser);

#[cfg(test)]
mod golden_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(html: &str) -> Recipe {
        parse_recipe(html, None).unwrap()
    }

    #[test]
    fn params() {
        assert_eq!(check_params(&[]), Ok(()));
        let err = check_params(&[("threshold".into(), "1".into())]).unwrap_err();
        assert!(err.contains("`threshold`"), "{err}");
    }

    #[test]
    fn serialises_in_contract_shape() {
        let r = Recipe {
            name: "Soup".into(),
            calories: Some(551.0),
            ingredients: vec!["water".into()],
            servings: None,
            url: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"name":"Soup","calories":551,"ingredients":["water"],"servings":null,"url":null}"#
        );
        let r = Recipe {
            calories: Some(551.5),
            ..r
        };
        assert!(
            serde_json::to_string(&r)
                .unwrap()
                .contains(r#""calories":551.5"#)
        );
        let r = Recipe {
            calories: None,
            ..r
        };
        assert!(
            serde_json::to_string(&r)
                .unwrap()
                .contains(r#""calories":null"#)
        );
    }

    #[test]
    fn heading_only_page_is_not_a_recipe() {
        let err = parse_recipe("<html><head><title>Blog</title></head><body><h1>Best Pasta Ever</h1><p>Story.</p></body></html>", None)
            .unwrap_err();
        assert_eq!(err, NO_RECIPE);
    }

    #[test]
    fn empty_and_garbage_inputs_are_not_recipes() {
        assert_eq!(parse_recipe("", None).unwrap_err(), NO_RECIPE);
        assert_eq!(
            parse_recipe("\u{0}\u{1}binary", None).unwrap_err(),
            NO_RECIPE
        );
        let lossy = String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x41]);
        assert_eq!(parse_recipe(&lossy, None).unwrap_err(), NO_RECIPE);
    }

    #[test]
    fn article_json_ld_is_not_a_recipe() {
        let html = r#"<script type="application/ld+json">{"@type":"Article","headline":"Ten pasta tips"}</script><h1>Ten pasta tips</h1>"#;
        assert_eq!(parse_recipe(html, None).unwrap_err(), NO_RECIPE);
    }

    #[test]
    fn url_precedence() {
        let ld = r#"<script type="application/ld+json">{"@type":"Recipe","name":"A","url":"https://ld.test/a"}</script>"#;
        let canon = r#"<link rel="canonical" href="https://canon.test/a">"#;
        let og = r#"<meta property="og:url" content="https://og.test/a">"#;
        let ld_no_url =
            r#"<script type="application/ld+json">{"@type":"Recipe","name":"A"}</script>"#;
        let url = |html: &str| {
            parse_recipe(html, Some("https://header.test/a"))
                .unwrap()
                .url
        };
        assert_eq!(
            url(&format!("{canon}{og}{ld}")).as_deref(),
            Some("https://ld.test/a")
        );
        assert_eq!(
            url(&format!("{og}{canon}{ld_no_url}")).as_deref(),
            Some("https://canon.test/a")
        );
        assert_eq!(
            url(&format!("{og}{ld_no_url}")).as_deref(),
            Some("https://og.test/a")
        );
        assert_eq!(url(ld_no_url).as_deref(), Some("https://header.test/a"));
        assert_eq!(parse_recipe(ld_no_url, None).unwrap().url, None);
        assert_eq!(parse_recipe(ld_no_url, Some("  ")).unwrap().url, None);
    }

    #[test]
    fn name_fallbacks() {
        let md = r#"<ul><li itemprop="recipeIngredient">1 egg</li></ul>"#;
        let og = r#"<meta property="og:title" content="OG &amp; Name">"#;
        let title = "<title> Title  Name </title>";
        let h1 = "<h1>H1 <em>Name</em></h1>";
        let name = |html: String| parse(&html).name;
        assert_eq!(name(format!("{title}{og}{h1}{md}")), "H1 Name");
        assert_eq!(name(format!("{title}{og}{md}")), "OG & Name");
        assert_eq!(name(format!("{title}{md}")), "Title Name");
        assert_eq!(
            parse_recipe(md, None).unwrap_err(),
            "recipe found in page but it has no name"
        );
    }

    #[test]
    fn svg_title_is_not_the_page_title() {
        let html = r#"<body><svg><title>icon</title></svg><ul><li itemprop="recipeIngredient">1 egg</li></ul></body>"#;
        assert!(parse_recipe(html, None).is_err());
    }

    #[test]
    fn json_ld_fields_are_filled_from_microdata() {
        let html = r#"<script type="application/ld+json">{"@type":"Recipe","name":"LD name"}</script>
            <div itemscope itemtype="https://schema.org/Recipe"><span itemprop="name">MD name</span>
            <span itemprop="recipeIngredient">1 egg</span><span itemprop="calories">90 kcal</span>
            <span itemprop="recipeYield">2</span></div>"#;
        let r = parse(html);
        assert_eq!(r.name, "LD name");
        assert_eq!(r.ingredients, vec!["1 egg"]);
        assert_eq!(r.calories, Some(90.0));
        assert_eq!(r.servings.as_deref(), Some("2"));
    }

    #[test]
    fn ld_json_type_attribute_variants() {
        let html = r#"<script type=" Application/LD+JSON; charset=utf-8 ">{"@type":"Recipe","name":"X"}</script>"#;
        assert_eq!(parse(html).name, "X");
        let html = r#"<script type="application/json">{"@type":"Recipe","name":"X"}</script>"#;
        assert_eq!(parse_recipe(html, None).unwrap_err(), NO_RECIPE);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let html = "\u{feff}<script type=\"application/ld+json\">{\"@type\":\"Recipe\",\"name\":\"X\"}</script>";
        assert_eq!(parse(html).name, "X");
    }

    #[test]
    fn broken_json_ld_is_noted() {
        let html = r#"<script type="application/ld+json">{"@type": </script><h1>x</h1>"#;
        let mut notes = Vec::new();
        assert_eq!(
            parse_recipe_noted(html, None, &mut notes).unwrap_err(),
            NO_RECIPE
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
}
