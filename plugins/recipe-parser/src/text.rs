//! Text clean-up shared by the extractors.
//!
//! Promises: every string that leaves this module is trimmed and has its
//! whitespace runs (including non-breaking spaces) collapsed to one ASCII
//! space; strings that came from JSON-LD also have HTML entities decoded
//! (even double-encoded ones such as `&amp;#39;`) and stray HTML tags
//! removed; calorie strings such as `"1,200 kcal"` become numbers.

use sluice_plugin::html::collapse_ws;
use sluice_plugin::html::tokenize::visible_text;

/// Cleans a string that may contain HTML markup or entities (JSON-LD values
/// are often HTML-escaped): strips tags, decodes entities the way a browser
/// would, then collapses whitespace.
pub fn clean_html_string(s: &str) -> String {
    if !s.contains(['&', '<']) {
        return collapse_ws(s);
    }
    // First pass: a real HTML fragment parse strips tags and decodes entities.
    let mut text = fragment_text(s);
    // Double-encoded input (`&amp;#39;`) still looks like entities after one
    // pass. Decode again, but keep any `<` literal so that text which was
    // escaped on purpose (`&lt;b&gt;`) is not mistaken for a tag.
    for _ in 0..2 {
        if !has_entity(&text) {
            break;
        }
        text = fragment_text(&text.replace('<', "&lt;"));
    }
    collapse_ws(&text)
}

/// Parses `s` as an HTML fragment and returns its text content.
fn fragment_text(s: &str) -> String {
    visible_text(s, |_| false)
}

/// Whether `s` contains something that looks like a character reference:
/// `&name;`, `&#123;` or `&#x1F;`.
fn has_entity(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        if b != b'&' {
            return false;
        }
        let rest = &bytes[i + 1..];
        let (body, numeric) = match rest {
            [b'#', b'x' | b'X', tail @ ..] => (tail, true),
            [b'#', tail @ ..] => (tail, true),
            _ => (rest, false),
        };
        let len = body
            .iter()
            .take_while(|c| {
                if numeric {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_alphanumeric()
                }
            })
            .count();
        len > 0 && body.get(len) == Some(&b';')
    })
}

/// One number found in a calorie string, with the word that follows it.
struct Quantity {
    value: f64,
    unit: String,
}

/// Parses a calorie amount such as `"551 kcal"`, `"551 calories"`,
/// `"551 Cal"`, `"551"`, `"551.5 kcal"` or `"1,200 kcal"`.
///
/// A number followed by `kcal`/`cal`/`calories` wins; otherwise the first
/// number that is not in kilojoules; a string with only kilojoules is
/// converted (1 kcal = 4.184 kJ, rounded to a whole number).
pub fn parse_calories(s: &str) -> Option<f64> {
    let quantities = scan_numbers(s);
    if let Some(q) = quantities
        .iter()
        .find(|q| q.unit.starts_with("cal") || q.unit == "kcal")
    {
        return Some(q.value);
    }
    if let Some(q) = quantities.iter().find(|q| q.unit != "kj") {
        return Some(q.value);
    }
    quantities.first().map(|q| (q.value / 4.184).round())
}

/// Finds every number in `s`, accepting `,` as a thousands separator when it
/// is followed by exactly three digits, and `.` or `,` as a decimal point.
fn scan_numbers(s: &str) -> Vec<Quantity> {
    let b = s.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut digits = String::new();
        while i < b.len() {
            if b[i].is_ascii_digit() {
                digits.push(b[i] as char);
                i += 1;
            } else if b[i] == b','
                && b.len() >= i + 4
                && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
                && b.get(i + 4).is_none_or(|c| !c.is_ascii_digit())
            {
                i += 1; // thousands separator
            } else {
                break;
            }
        }
        if i + 1 < b.len() && matches!(b[i], b'.' | b',') && b[i + 1].is_ascii_digit() {
            digits.push('.');
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                digits.push(b[i] as char);
                i += 1;
            }
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = s[unit_start..i].to_ascii_lowercase();
        if let Ok(value) = digits.parse::<f64>()
            && value.is_finite()
        {
            found.push(Quantity { value, unit });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_entities() {
        assert_eq!(clean_html_string("Mac &amp; Cheese"), "Mac & Cheese");
        assert_eq!(clean_html_string("Grandma&#39;s Pie"), "Grandma's Pie");
        assert_eq!(
            clean_html_string("Cr&egrave;me br&ucirc;l&eacute;e"),
            "Crème brûlée"
        );
        assert_eq!(clean_html_string("350&deg;F &#x2013; hot"), "350°F – hot");
        assert_eq!(clean_html_string("1&nbsp;cup  flour"), "1 cup flour");
    }

    #[test]
    fn decodes_double_encoded_entities() {
        assert_eq!(clean_html_string("Grandma&amp;#39;s Pie"), "Grandma's Pie");
        assert_eq!(clean_html_string("Mac &amp;amp; Cheese"), "Mac & Cheese");
    }

    #[test]
    fn escaped_markup_stays_text() {
        assert_eq!(clean_html_string("use &lt;b&gt; tags"), "use <b> tags");
        assert_eq!(clean_html_string("a &amp;lt;b&amp;gt; c"), "a <b> c");
    }

    #[test]
    fn strips_tags() {
        assert_eq!(
            clean_html_string("2 <a href=\"/x\">chicken breasts</a>, <strong>diced</strong>"),
            "2 chicken breasts, diced"
        );
        assert_eq!(
            clean_html_string("less than <1 tsp salt"),
            "less than <1 tsp salt"
        );
    }

    #[test]
    fn plain_strings_untouched() {
        assert_eq!(clean_html_string("AT&T"), "AT&T");
        assert_eq!(clean_html_string("salt & pepper"), "salt & pepper");
    }

    #[test]
    fn entity_detection() {
        assert!(has_entity("a &amp; b"));
        assert!(has_entity("&#39;"));
        assert!(has_entity("&#x27;"));
        assert!(!has_entity("a & b"));
        assert!(!has_entity("a &b"));
        assert!(!has_entity("&;"));
    }

    #[test]
    fn calories_forms() {
        assert_eq!(parse_calories("551 kcal"), Some(551.0));
        assert_eq!(parse_calories("551 calories"), Some(551.0));
        assert_eq!(parse_calories("551 Cal"), Some(551.0));
        assert_eq!(parse_calories("551"), Some(551.0));
        assert_eq!(parse_calories("551.5 kcal"), Some(551.5));
        assert_eq!(parse_calories("1,200 kcal"), Some(1200.0));
        assert_eq!(parse_calories("1,200,000 kcal"), Some(1_200_000.0));
        assert_eq!(parse_calories("551kcal"), Some(551.0));
        assert_eq!(parse_calories("Calories: 320"), Some(320.0));
        assert_eq!(parse_calories("  212 KCAL "), Some(212.0));
    }

    #[test]
    fn calories_prefers_kcal_over_kj() {
        assert_eq!(parse_calories("2305 kJ / 551 kcal"), Some(551.0));
        assert_eq!(parse_calories("2092 kJ"), Some(500.0));
    }

    #[test]
    fn calories_decimal_comma() {
        assert_eq!(parse_calories("551,5 kcal"), Some(551.5));
    }

    #[test]
    fn calories_garbage() {
        assert_eq!(parse_calories(""), None);
        assert_eq!(parse_calories("lots"), None);
    }
}
