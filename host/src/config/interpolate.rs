//! `${VAR}` and `${VAR:-default}` substitution in config text, so secrets
//! and per-environment values come from the environment, never from a
//! committed file.
//!
//! Promise: an unset variable without a default is an error that names the
//! variable and its line; `$$` writes a literal `$`.

/// Substitute variables in `text`, looking them up with `lookup`.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!(
                    "line {}: unterminated ${{ in config",
                    line_of(text, rest, pos)
                )
            })?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "line {}: invalid variable name {name:?} in ${{{expr}}}",
                    line_of(text, rest, pos)
                ));
            }
            // An empty variable counts as unset when there is a default.
            let value = lookup(name).filter(|v| !v.is_empty() || default.is_none());
            match (value, default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "line {}: environment variable {name} is not set (use ${{{name}:-default}} for a default)",
                        line_of(text, rest, pos)
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn line_of(text: &str, rest: &str, pos: usize) -> usize {
    let offset = text.len() - rest.len() + pos;
    text[..offset].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes() {
        assert_eq!(interpolate("a=${HOST}", env).unwrap(), "a=kafka:9092");
        assert_eq!(interpolate("${NOPE:-x:1}", env).unwrap(), "x:1");
        assert_eq!(interpolate("${EMPTY:-d}", env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", env).unwrap(), "");
        assert_eq!(
            interpolate("cost $$5 and $x", env).unwrap(),
            "cost $5 and $x"
        );
    }

    #[test]
    fn errors_name_variable_and_line() {
        let err = interpolate("a = 1\nb = \"${MISSING}\"", env).unwrap_err();
        assert!(err.contains("MISSING") && err.contains("line 2"), "{err}");
        assert!(
            interpolate("${OPEN", env)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            interpolate("${a b}", env)
                .unwrap_err()
                .contains("invalid variable")
        );
    }
}
