//! `--where` predicates on decoded event fields: `field OP value` with
//! `=`, `!=`, `>`, `>=`, `<`, `<=` and `~` (contains).
//!
//! Fields are proto3 JSON paths: `amount_minor` and `amountMinor` both name
//! the same field; `a.b` descends into messages. Numbers compare as numbers
//! (proto3 JSON writes 64-bit integers as strings, so both sides are parsed
//! when they look numeric); everything else compares as text.

use std::cmp::Ordering;
use std::str::FromStr;

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `~`: the text contains the value.
    Contains,
}

/// One `field OP value` predicate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Predicate {
    path: Vec<String>,
    op: Op,
    value: String,
}

impl FromStr for Predicate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        // Two-character operators first, so `>=` is not read as `>`.
        const OPS: [(&str, Op); 7] = [
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("~", Op::Contains),
        ];
        let found = OPS
            .iter()
            .filter_map(|(token, op)| text.find(token).map(|at| (at, *token, *op)))
            .min_by_key(|(at, token, _)| (*at, std::cmp::Reverse(token.len())));
        let Some((at, token, op)) = found else {
            return Err(format!(
                "predicate {text:?} has no operator (use = != > >= < <= or ~)"
            ));
        };
        let field = text[..at].trim();
        if field.is_empty()
            || !field
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("predicate {text:?} has an invalid field name"));
        }
        let value = text[at + token.len()..].trim();
        if value.starts_with(['=', '!', '<', '>', '~']) {
            return Err(format!(
                "predicate {text:?} has two operators; write one of = != > >= < <= ~"
            ));
        }
        if value.is_empty() && !matches!(op, Op::Eq | Op::Ne) {
            return Err(format!("predicate {text:?} has no value to compare with"));
        }
        Ok(Self {
            path: field.split('.').map(to_camel_case).collect(),
            op,
            value: value.to_owned(),
        })
    }
}

fn to_camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Predicate {
    /// True when the event's data satisfies the predicate. A missing field
    /// is proto3's default: `0`, `false` or empty text.
    pub(crate) fn matches(&self, data: &Value) -> bool {
        let mut current = Some(data);
        for part in &self.path {
            current = current.and_then(|v| v.get(part));
        }
        let actual = match current {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if self.op == Op::Contains {
            return actual.contains(&self.value);
        }
        let ordering = match (number(&actual, current), self.value.parse::<f64>()) {
            (Some(a), Ok(b)) => a.partial_cmp(&b),
            _ => Some(actual.as_str().cmp(self.value.as_str())),
        };
        let Some(ordering) = ordering else {
            return false;
        };
        match self.op {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Contains => unreachable!("handled above"),
        }
    }
}

/// The field as a number: numeric JSON, numeric text, or an absent field
/// (proto3 omits zeros).
fn number(text: &str, value: Option<&Value>) -> Option<f64> {
    match value {
        None | Some(Value::Null) => Some(0.0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(_)) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(text: &str) -> Predicate {
        text.parse().unwrap()
    }

    #[test]
    fn parses_every_operator() {
        assert_eq!(p("amount_minor>=10").op, Op::Ge);
        assert_eq!(p("a!=b").op, Op::Ne);
        assert_eq!(p("a<=1").op, Op::Le);
        assert_eq!(p("text~pirate").op, Op::Contains);
        assert_eq!(p("amount_minor > 10").path, vec!["amountMinor".to_owned()]);
        assert!("amount".parse::<Predicate>().is_err());
        assert!("=3".parse::<Predicate>().is_err());
    }

    #[test]
    fn malformed_operators_are_refused() {
        for bad in ["amount_minor>>5", "a=>1", "a<>1", "a>=", "a~", "a!==b"] {
            assert!(bad.parse::<Predicate>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(p("a=").value, "", "an empty value still means empty text");
    }

    #[test]
    fn compares_numbers_numerically_and_text_as_text() {
        let data = json!({"amountMinor": "12000", "currency": "USD", "original": {"sizeBytes": 5}});
        assert!(p("amount_minor>10000").matches(&data));
        assert!(!p("amount_minor<9999").matches(&data));
        assert!(p("currency=USD").matches(&data));
        assert!(p("currency~US").matches(&data));
        assert!(p("original.size_bytes=5").matches(&data));
        assert!(p("width_px=0").matches(&data));
        assert!(!p("currency!=USD").matches(&data));
    }
}
