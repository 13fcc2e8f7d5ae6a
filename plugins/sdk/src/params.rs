//! `init` parameters: the check every plugin makes, written once.
//!
//! Promises: an unknown parameter is refused with
//! ``<plugin>: unknown parameter `<key>` (known parameters: a, b)``, or
//! ``(it takes no parameters)`` for a plugin that takes none; keys are
//! matched exactly (case matters); a known name ending in `.` admits every
//! key with that prefix (`header.` admits `header.Accept`).

/// A plugin's checked parameters, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Checks `params` against the `known` names of `plugin`'s parameters.
    pub fn new(
        plugin: &str,
        known: &[&str],
        params: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let admits = |key: &str| {
            known.iter().any(|k| match k.strip_suffix('.') {
                Some(_) => key.starts_with(k) && key.len() > k.len(),
                None => *k == key,
            })
        };
        if let Some((key, _)) = params.iter().find(|(key, _)| !admits(key)) {
            let known = if known.is_empty() {
                "it takes no parameters".to_string()
            } else {
                let names: Vec<String> = known
                    .iter()
                    .map(|k| {
                        if k.ends_with('.') {
                            format!("{k}NAME")
                        } else {
                            k.to_string()
                        }
                    })
                    .collect();
                format!("known parameters: {}", names.join(", "))
            };
            return Err(format!("{plugin}: unknown parameter `{key}` ({known})"));
        }
        Ok(Params { pairs: params })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)` pair, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn none_taken() {
        assert!(Params::new("x", &[], p(&[])).is_ok());
        assert_eq!(
            Params::new("x", &[], p(&[("a", "1")])).unwrap_err(),
            "x: unknown parameter `a` (it takes no parameters)"
        );
    }

    #[test]
    fn names_the_first_unknown_and_lists_the_known() {
        let err = Params::new(
            "calorie-alert",
            &["threshold"],
            p(&[("threshold", "1"), ("Threshold", "2")]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "calorie-alert: unknown parameter `Threshold` (known parameters: threshold)"
        );
    }

    #[test]
    fn prefixes_and_last_value_wins() {
        let params = Params::new(
            "h",
            &["a", "header."],
            p(&[("a", "1"), ("header.X", "y"), ("a", "2")]),
        )
        .unwrap();
        assert_eq!(params.get("a"), Some("2"));
        assert_eq!(params.get("header.X"), Some("y"));
        assert_eq!(params.get("b"), None);
        assert_eq!(
            Params::new("h", &["header."], p(&[("header.", "y")])).unwrap_err(),
            "h: unknown parameter `header.` (known parameters: header.NAME)"
        );
    }
}
