//! Request parameters read the OAuth way (RFC 6749 §3.1): a parameter sent without a value
//! counts as omitted, and one sent twice is an error.

use std::fmt;

use http::HeaderMap;
use http::header::CONTENT_TYPE;

pub(super) struct Params(Vec<(String, String)>);

#[derive(Debug)]
pub(super) enum ParamError {
    Missing(&'static str),
    Repeated(&'static str),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "missing parameter {name}"),
            Self::Repeated(name) => write!(f, "parameter {name} given more than once"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    Form,
    Json,
}

impl BodyKind {
    /// The kind of body the Content-Type announces, if it is one read here.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Self::Form)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }
}

impl Params {
    /// A query string or an `application/x-www-form-urlencoded` body.
    pub fn from_urlencoded(input: &[u8]) -> Self {
        let pairs = form_urlencoded::parse(input)
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self(pairs)
    }

    /// A JSON object whose values are strings or numbers (null counts as omitted); `None`
    /// for anything else.
    pub fn from_json(input: &[u8]) -> Option<Self> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(input).ok()?;
        let mut pairs = Vec::with_capacity(object.len());
        for (name, value) in object {
            let value = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Null => continue,
                _ => return None,
            };
            if !value.is_empty() {
                pairs.push((name, value));
            }
        }
        Some(Self(pairs))
    }

    /// A sandbox control request's body: a form, or a JSON object whose values are
    /// strings, numbers or booleans (null counts as omitted).
    pub fn from_body(kind: Option<BodyKind>, body: &[u8]) -> Result<Self, String> {
        match kind {
            Some(BodyKind::Form) => Ok(Self::from_urlencoded(body)),
            Some(BodyKind::Json) => {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(body)
                        .map_err(|error| format!("the body is not a JSON object: {error}"))?;
                let mut pairs = Vec::with_capacity(object.len());
                for (name, value) in object {
                    let value = match value {
                        serde_json::Value::String(text) => text,
                        serde_json::Value::Number(number) => number.to_string(),
                        serde_json::Value::Bool(flag) => flag.to_string(),
                        serde_json::Value::Null => continue,
                        _ => return Err(format!("{name} must be a string, a number or a boolean")),
                    };
                    if !value.is_empty() {
                        pairs.push((name, value));
                    }
                }
                Ok(Self(pairs))
            }
            None => Err(
                "the body must be application/json or application/x-www-form-urlencoded".to_owned(),
            ),
        }
    }

    pub fn optional(&self, name: &'static str) -> Result<Option<&str>, ParamError> {
        let mut values = self
            .0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str());
        match (values.next(), values.next()) {
            (first, None) => Ok(first),
            (_, Some(_)) => Err(ParamError::Repeated(name)),
        }
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ParamError> {
        self.optional(name)?.ok_or(ParamError::Missing(name))
    }
}
