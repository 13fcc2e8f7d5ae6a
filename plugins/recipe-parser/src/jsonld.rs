//! schema.org `Recipe` extraction from JSON-LD (`<script type="application/ld+json">`).
//!
//! Promises: finds `Recipe` objects anywhere in a script's JSON (top-level
//! objects or arrays, `@graph`, nested values such as `mainEntity`), with
//! `@type` given as a string or an array, in any number of scripts. Scripts
//! that are not strict JSON (HTML comment or CDATA wrappers, raw control
//! characters inside strings, trailing commas) are repaired when possible;
//! anything unparseable is skipped with a note, never a failure.

use serde_json::Value;

use sluice_plugin::html::non_empty;

use crate::text::{clean_html_string, parse_calories};

/// The recipe fields JSON-LD can give.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LdRecipe {
    /// `name` (or `headline`).
    pub name: Option<String>,
    /// `recipeIngredient` (or the legacy `ingredients`).
    pub ingredients: Vec<String>,
    /// `recipeYield`.
    pub servings: Option<String>,
    /// `nutrition.calories`.
    pub calories: Option<f64>,
    /// `url`.
    pub url: Option<String>,
}

/// Parses every JSON-LD script and returns the recipe to use: the first
/// `Recipe` that lists ingredients, or else the first `Recipe` at all.
/// Problems with individual scripts are appended to `notes`.
pub fn find_recipe<S: AsRef<str>>(scripts: &[S], notes: &mut Vec<String>) -> Option<LdRecipe> {
    let mut values = Vec::new();
    for (index, script) in scripts.iter().enumerate() {
        parse_script(script.as_ref(), &mut values, index, notes);
    }
    let mut found = Vec::new();
    for value in &values {
        collect_recipes(value, &mut found);
    }
    let recipes: Vec<LdRecipe> = found.into_iter().map(extract).collect();
    let chosen = recipes
        .iter()
        .position(|r| !r.ingredients.is_empty())
        .unwrap_or(0);
    recipes.into_iter().nth(chosen)
}

/// Parses one script's text into JSON values (a script may hold several
/// concatenated values), repairing common breakage if strict parsing fails.
fn parse_script(raw: &str, out: &mut Vec<Value>, index: usize, notes: &mut Vec<String>) {
    let text = strip_wrappers(raw);
    if text.is_empty() {
        return;
    }
    let (strict, strict_err) = parse_values(text);
    if strict_err.is_none() {
        out.extend(strict);
        return;
    }
    let repaired = repair(text);
    let (lenient, lenient_err) = parse_values(&repaired);
    let best = if lenient.len() >= strict.len() {
        lenient
    } else {
        strict
    };
    if let Some(err) = lenient_err {
        notes.push(format!("JSON-LD script {index} is not valid JSON: {err}"));
    }
    out.extend(best);
}

/// Parses whitespace-separated JSON values until the end or the first error.
fn parse_values(text: &str) -> (Vec<Value>, Option<serde_json::Error>) {
    let mut values = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match item {
            Ok(v) => values.push(v),
            Err(e) => return (values, Some(e)),
        }
    }
    (values, None)
}

/// Removes HTML comment and CDATA wrappers some CMSes put around scripts.
fn strip_wrappers(raw: &str) -> &str {
    let mut s = raw.trim();
    for prefix in ["<!--", "//<![CDATA[", "/*<![CDATA[*/", "<![CDATA["] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.trim_start();
        }
    }
    for suffix in ["-->", "//]]>", "/*]]>*/", "]]>"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            s = rest.trim_end();
        }
    }
    s
}

/// Replaces raw control characters inside strings with spaces and drops
/// trailing commas before `}` or `]`.
fn repair(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
            } else if c == '\\' {
                escaped = true;
                out.push(c);
            } else if c == '"' {
                in_string = false;
                out.push(c);
            } else if c.is_control() {
                out.push(' ');
            } else {
                out.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            ',' => {
                let next = text[i + 1..].trim_start().chars().next();
                if !matches!(next, Some('}' | ']')) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Whether a JSON-LD `@type` value names `Recipe`.
fn is_recipe_type(t: &Value) -> bool {
    match t {
        Value::String(s) => {
            let last = s
                .trim()
                .trim_end_matches('/')
                .rsplit(['/', ':', '#'])
                .next()
                .unwrap_or("");
            last.eq_ignore_ascii_case("recipe")
        }
        Value::Array(items) => items.iter().any(is_recipe_type),
        _ => false,
    }
}

/// Collects `Recipe` objects anywhere inside `value`, in document order
/// for arrays (such as `@graph`).
fn collect_recipes<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_recipes(item, out);
            }
        }
        Value::Object(map) => {
            if map.get("@type").is_some_and(is_recipe_type) {
                out.push(value);
                return;
            }
            if let Some(graph) = map.get("@graph") {
                collect_recipes(graph, out);
            }
            for (key, v) in map {
                if key != "@graph" {
                    collect_recipes(v, out);
                }
            }
        }
        _ => {}
    }
}

/// Reads the fields of one `Recipe` object.
fn extract(recipe: &Value) -> LdRecipe {
    let name = recipe
        .get("name")
        .and_then(first_string)
        .or_else(|| recipe.get("headline").and_then(first_string));
    let mut ingredients = recipe
        .get("recipeIngredient")
        .map(string_list)
        .unwrap_or_default();
    if ingredients.is_empty() {
        ingredients = recipe
            .get("ingredients")
            .map(string_list)
            .unwrap_or_default();
    }
    LdRecipe {
        name,
        ingredients,
        servings: recipe.get("recipeYield").and_then(yield_text),
        calories: recipe.get("nutrition").and_then(nutrition_calories),
        url: recipe.get("url").and_then(first_string),
    }
}

/// A cleaned, non-empty string from a string or the first usable element of
/// an array.
fn first_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => non_empty(clean_html_string(s)),
        Value::Array(items) => items.iter().find_map(first_string),
        _ => None,
    }
}

/// A list of cleaned strings: an array of strings (or of objects with a
/// `text` or `name`), or a single string with one item per line.
fn string_list(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    push_list_items(v, &mut out);
    out
}

fn push_list_items(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(
            s.lines()
                .filter_map(|line| non_empty(clean_html_string(line))),
        ),
        Value::Number(n) => out.push(number_text(n)),
        Value::Array(items) => {
            for item in items {
                push_list_items(item, out);
            }
        }
        Value::Object(map) => {
            if let Some(s) = map
                .get("text")
                .or_else(|| map.get("name"))
                .and_then(first_string)
            {
                out.push(s);
            }
        }
        _ => {}
    }
}

/// `recipeYield` as text: a string, a number, or the first usable element
/// of an array.
fn yield_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => non_empty(clean_html_string(s)),
        Value::Number(n) => Some(number_text(n)),
        Value::Array(items) => items.iter().find_map(yield_text),
        _ => None,
    }
}

/// Formats a JSON number without a spurious `.0`.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// `nutrition.calories`, where `nutrition` may be an object or an array of
/// objects and `calories` a number, a string or an array.
fn nutrition_calories(v: &Value) -> Option<f64> {
    match v {
        Value::Object(map) => map.get("calories").and_then(calories_value),
        Value::Array(items) => items.iter().find_map(nutrition_calories),
        _ => None,
    }
}

fn calories_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0),
        Value::String(s) => parse_calories(s),
        Value::Array(items) => items.iter().find_map(calories_value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(scripts: &[&str]) -> Option<LdRecipe> {
        let mut notes = Vec::new();
        find_recipe(scripts, &mut notes)
    }

    #[test]
    fn plain_recipe() {
        let r = find(&[r#"{"@context":"https://schema.org","@type":"Recipe","name":"Soup",
            "recipeIngredient":["1 onion","2 cups stock"],"recipeYield":"4 servings",
            "nutrition":{"@type":"NutritionInformation","calories":"210 kcal"},"url":"https://x.test/soup"}"#])
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("Soup"));
        assert_eq!(r.ingredients, vec!["1 onion", "2 cups stock"]);
        assert_eq!(r.servings.as_deref(), Some("4 servings"));
        assert_eq!(r.calories, Some(210.0));
        assert_eq!(r.url.as_deref(), Some("https://x.test/soup"));
    }

    #[test]
    fn graph_and_type_array() {
        let r = find(&[r#"{"@context":"https://schema.org","@graph":[
            {"@type":"WebPage","name":"Page"},
            {"@type":["Recipe","NewsArticle"],"name":"Stew","recipeIngredient":["beef"]}]}"#])
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("Stew"));
    }

    #[test]
    fn top_level_array_and_several_scripts() {
        let r = find(&[
            r#"{"@type":"Organization","name":"Site"}"#,
            r#"[{"@type":"BreadcrumbList"},{"@type":"http://schema.org/Recipe","name":"Cake","ingredients":["flour"]}]"#,
        ])
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("Cake"));
        assert_eq!(r.ingredients, vec!["flour"]);
    }

    #[test]
    fn nested_main_entity() {
        let r =
            find(&[r#"{"@type":"WebPage","mainEntity":{"@type":"Recipe","name":"Pie"}}"#]).unwrap();
        assert_eq!(r.name.as_deref(), Some("Pie"));
    }

    #[test]
    fn prefers_recipe_with_ingredients() {
        let r = find(&[r#"[{"@type":"Recipe","name":"Teaser"},{"@type":"Recipe","name":"Real","recipeIngredient":["x"]}]"#])
            .unwrap();
        assert_eq!(r.name.as_deref(), Some("Real"));
    }

    #[test]
    fn no_recipe() {
        assert_eq!(find(&[r#"{"@type":"Article","name":"News"}"#]), None);
        assert_eq!(
            find(&[r#"{"@type":"RecipeCollection","name":"List"}"#]),
            None
        );
        assert_eq!(find(&["not json at all"]), None);
    }

    #[test]
    fn yields() {
        let y = |v: &str| yield_text(&serde_json::from_str(v).unwrap());
        assert_eq!(y("\"6\""), Some("6".into()));
        assert_eq!(y("8"), Some("8".into()));
        assert_eq!(y("8.0"), Some("8".into()));
        assert_eq!(y("2.5"), Some("2.5".into()));
        assert_eq!(y(r#"["4", "4 servings"]"#), Some("4".into()));
        assert_eq!(y(r#"["", "12 cookies"]"#), Some("12 cookies".into()));
        assert_eq!(y("null"), None);
    }

    #[test]
    fn calories_forms() {
        let c = |v: &str| nutrition_calories(&serde_json::from_str(v).unwrap());
        assert_eq!(c(r#"{"calories": 551}"#), Some(551.0));
        assert_eq!(c(r#"{"calories": "1,200 calories"}"#), Some(1200.0));
        assert_eq!(c(r#"[{"calories": "300 kcal"}]"#), Some(300.0));
        assert_eq!(c(r#"{"fatContent": "3 g"}"#), None);
    }

    #[test]
    fn entities_in_strings_are_decoded() {
        let r = find(&[r#"{"@type":"Recipe","name":"Mac &amp; Cheese","recipeIngredient":["Grandma&#39;s &quot;secret&quot; sauce"]}"#])
            .unwrap();
        assert_eq!(r.name.as_deref(), Some("Mac & Cheese"));
        assert_eq!(r.ingredients, vec!["Grandma's \"secret\" sauce"]);
    }

    #[test]
    fn repairs_broken_json() {
        let raw = "<!--\n{\"@type\":\"Recipe\",\"name\":\"Line\nbreak\",\"recipeIngredient\":[\"a\",\"b\",],}\n-->";
        let mut notes = Vec::new();
        let r = find_recipe(&[raw], &mut notes).unwrap();
        assert_eq!(r.name.as_deref(), Some("Line break"));
        assert_eq!(r.ingredients, vec!["a", "b"]);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn unparseable_script_is_noted() {
        let mut notes = Vec::new();
        assert_eq!(find_recipe(&["{\"@type\": \"Recipe\", "], &mut notes), None);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn ingredients_as_text_block_and_objects() {
        let r =
            find(&[r#"{"@type":"Recipe","name":"X","recipeIngredient":"1 egg\n2 cups milk\n"}"#])
                .unwrap();
        assert_eq!(r.ingredients, vec!["1 egg", "2 cups milk"]);
        let r = find(&[r#"{"@type":"Recipe","name":"X","recipeIngredient":[{"@type":"HowToSupply","name":"sugar"}]}"#]).unwrap();
        assert_eq!(r.ingredients, vec!["sugar"]);
    }

    #[test]
    fn wrappers() {
        assert_eq!(strip_wrappers("  //<![CDATA[\n{}\n//]]>  "), "{}");
        assert_eq!(strip_wrappers("<!-- {} -->"), "{}");
    }
}
