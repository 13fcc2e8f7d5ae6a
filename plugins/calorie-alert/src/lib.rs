//! Calorie alert plugin: flags recipes whose calories exceed a threshold.
//!
//! Input value: recipe JSON as written by `recipe-parser` (only `calories`
//! is required; `name` and `url` are echoed when present).
//!
//! Promises:
//! - When `calories > threshold`, emits exactly one output on the default
//!   route with the input's key and the value
//!   `{"name": ..., "calories": ..., "threshold": ..., "url": ...}`
//!   (`name`/`url` are copied as given, `null` when absent; `calories` is the
//!   input number unchanged). Otherwise emits nothing (the record is
//!   filtered out).
//! - Malformed JSON, a value that is not a JSON object, or `calories` that is
//!   not a number fail with an `invalid` error naming the problem; missing or
//!   `null` calories fail with `invalid` "recipe has no calories".
//! - Parameter `threshold`: a non-negative number, default 500. A bad value
//!   or any unknown parameter makes `init` fail, naming the parameter.

use std::cell::Cell;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use sluice_plugin::{Guest, Input, Output, ProcessError};

use sluice_plugin::ErrorKind;

/// The threshold used when the `threshold` parameter is not given.
#[cfg(not(feature = "default-threshold-300"))]
pub const DEFAULT_THRESHOLD: f64 = 500.0;
/// The threshold used when the `threshold` parameter is not given (the
/// hot-swap tests' variant build).
#[cfg(feature = "default-threshold-300")]
pub const DEFAULT_THRESHOLD: f64 = 300.0;

/// The plugin's parsed parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Recipes with more calories than this are flagged.
    pub threshold: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// Parses the plugin's parameters.
pub fn parse_params(params: &[(String, String)]) -> Result<Config, String> {
    let params = sluice_plugin::Params::new("calorie-alert", &["threshold"], params.to_vec())?;
    let mut config = Config::default();
    if let Some(value) = params.get("threshold") {
        config.threshold = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                format!("calorie-alert: parameter `threshold` must be a non-negative number, got {value:?}")
            })?;
    }
    Ok(config)
}

/// The alert emitted for a recipe over the threshold.
#[derive(Debug, Serialize)]
struct Alert<'a> {
    name: &'a Value,
    calories: &'a Value,
    #[serde(serialize_with = "serialize_number")]
    threshold: f64,
    url: &'a Value,
}

/// Writes whole numbers as JSON integers (`500`, not `500.0`).
fn serialize_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Checks one recipe. Returns the alert's JSON value when the recipe is
/// over the threshold, `None` when it is not, or an error message when the
/// record is invalid.
pub fn check_recipe(value: &[u8], config: &Config) -> Result<Option<Vec<u8>>, String> {
    let recipe: Value =
        serde_json::from_slice(value).map_err(|e| format!("value is not valid JSON: {e}"))?;
    let Value::Object(recipe) = recipe else {
        return Err(format!(
            "recipe JSON must be an object, got {}",
            kind_of(&recipe)
        ));
    };
    let calories_value = recipe.get("calories").unwrap_or(&Value::Null);
    let calories = match calories_value {
        Value::Null => return Err("recipe has no calories".to_string()),
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("`calories` {n} is not a usable number"))?,
        other => {
            return Err(format!(
                "`calories` must be a number, got {}",
                kind_of(other)
            ));
        }
    };
    if calories <= config.threshold {
        return Ok(None);
    }
    let alert = Alert {
        name: field(&recipe, "name"),
        calories: calories_value,
        threshold: config.threshold,
        url: field(&recipe, "url"),
    };
    serde_json::to_vec(&alert)
        .map(Some)
        .map_err(|e| format!("cannot encode alert: {e}"))
}

fn field<'a>(recipe: &'a Map<String, Value>, name: &str) -> &'a Value {
    recipe.get(name).unwrap_or(&Value::Null)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

thread_local! {
    /// Parameters set by `init`; the default until then.
    static CONFIG: Cell<Config> = Cell::new(Config::default());
}

/// The plugin's export implementation.
struct CalorieAlert;

impl Guest for CalorieAlert {
    /// Each record exactly as `process` would answer it alone.
    fn process_batch(records: Vec<Input>) -> Vec<Result<Vec<Output>, ProcessError>> {
        sluice_plugin::each(records, Self::process)
    }

    fn init(params: Vec<(String, String)>) -> Result<(), String> {
        let config = parse_params(&params)?;
        CONFIG.with(|c| c.set(config));
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let config = CONFIG.with(Cell::get);
        match check_recipe(&rec.value, &config) {
            Ok(Some(value)) => Ok(vec![Output {
                route: None,
                key: rec.key,
                value,
                headers: Vec::new(),
            }]),
            Ok(None) => Ok(Vec::new()),
            Err(message) => Err(ProcessError {
                kind: ErrorKind::Invalid,
                message,
            }),
        }
    }
}

sluice_plugin::export!(CalorieAlert);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(threshold: f64) -> Config {
        Config { threshold }
    }

    fn alert(value: &str, threshold: f64) -> Option<Value> {
        check_recipe(value.as_bytes(), &config(threshold))
            .unwrap()
            .map(|v| serde_json::from_slice(&v).unwrap())
    }

    #[test]
    fn default_threshold_is_500() {
        assert_eq!(parse_params(&[]).unwrap().threshold, 500.0);
    }

    #[test]
    fn threshold_param() {
        assert_eq!(
            parse_params(&params(&[("threshold", "650")]))
                .unwrap()
                .threshold,
            650.0
        );
        assert_eq!(
            parse_params(&params(&[("threshold", " 99.5 ")]))
                .unwrap()
                .threshold,
            99.5
        );
        assert_eq!(
            parse_params(&params(&[("threshold", "0")]))
                .unwrap()
                .threshold,
            0.0
        );
    }

    #[test]
    fn bad_threshold_names_the_param() {
        for bad in ["lots", "", "-1", "NaN", "inf", "1e999"] {
            let err = parse_params(&params(&[("threshold", bad)])).unwrap_err();
            assert!(err.contains("`threshold`"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_param_is_named() {
        let err = parse_params(&params(&[("colour", "red")])).unwrap_err();
        assert!(err.contains("`colour`"), "{err}");
    }

    #[test]
    fn over_threshold_alerts() {
        let v = alert(
            r#"{"name":"Lasagne","calories":812,"ingredients":[],"servings":null,"url":"https://x/l"}"#,
            500.0,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"Lasagne","calories":812,"threshold":500,"url":"https://x/l"})
        );
    }

    #[test]
    fn alert_bytes_are_compact_and_ordered() {
        let bytes = check_recipe(br#"{"calories":551.5,"name":"Salmon"}"#, &config(450.5))
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"name":"Salmon","calories":551.5,"threshold":450.5,"url":null}"#
        );
    }

    #[test]
    fn at_or_under_threshold_is_quiet() {
        assert_eq!(alert(r#"{"name":"Salad","calories":120}"#, 500.0), None);
        assert_eq!(alert(r#"{"name":"Exact","calories":500}"#, 500.0), None);
        assert!(alert(r#"{"name":"Just over","calories":500.1}"#, 500.0).is_some());
    }

    #[test]
    fn missing_or_null_calories() {
        for v in [
            r#"{"name":"Mystery","calories":null}"#,
            r#"{"name":"Mystery"}"#,
        ] {
            assert_eq!(
                check_recipe(v.as_bytes(), &config(500.0)).unwrap_err(),
                "recipe has no calories"
            );
        }
    }

    #[test]
    fn malformed_input_names_the_problem() {
        let err = check_recipe(b"{not json", &config(500.0)).unwrap_err();
        assert!(err.starts_with("value is not valid JSON:"), "{err}");
        let err = check_recipe(b"", &config(500.0)).unwrap_err();
        assert!(err.starts_with("value is not valid JSON:"), "{err}");
        let err = check_recipe(&[0xff, 0xfe], &config(500.0)).unwrap_err();
        assert!(err.starts_with("value is not valid JSON:"), "{err}");
        let err = check_recipe(b"[1,2]", &config(500.0)).unwrap_err();
        assert_eq!(err, "recipe JSON must be an object, got an array");
        let err = check_recipe(br#"{"calories":"812 kcal"}"#, &config(500.0)).unwrap_err();
        assert_eq!(err, "`calories` must be a number, got a string");
    }

    #[test]
    fn recipe_parser_output_round_trip() {
        // The exact shape recipe-parser emits.
        let v = alert(
            r#"{"name":"Baked Mac & Cheese","calories":1050,"ingredients":["x"],"servings":"6","url":null}"#,
            500.0,
        )
        .unwrap();
        assert_eq!(v["calories"], 1050);
        assert_eq!(v["url"], Value::Null);
    }
}
