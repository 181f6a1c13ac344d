//! Reading Mercado Livre's JSON the lenient way its documentation calls for: ids that are
//! numbers in one example and strings in the next, dates with 3 or 9 fractional digits,
//! optional fields that may hold anything.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An id sent as a number or as a string of digits (`"buyer": {"id": "123456789"}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn number(self) -> Option<u64> {
        match self {
            NumberOrText::Number(number) => Some(number),
            NumberOrText::Text(text) => text.trim().parse().ok(),
        }
    }

    fn text(self) -> String {
        match self {
            NumberOrText::Number(number) => number.to_string(),
            NumberOrText::Text(text) => text,
        }
    }
}

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    NumberOrText::deserialize(deserializer)?
        .number()
        .ok_or_else(|| serde::de::Error::custom("not a number nor a string of digits"))
}

/// An optional id; anything that is not one reads as absent.
pub(super) fn optional_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Ok(Option::<serde_json::Value>::deserialize(deserializer)?
        .and_then(|value| NumberOrText::deserialize(value).ok())
        .and_then(NumberOrText::number))
}

/// An id kept as text, whether sent as a number or a string.
pub(super) fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(NumberOrText::deserialize(deserializer)?.text())
}

pub(super) fn rfc3339<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_date(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 date: {text:?}")))
}

/// An optional date; anything that is not one reads as absent.
pub(super) fn optional_rfc3339<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    Ok(Option::<serde_json::Value>::deserialize(deserializer)?
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(parse_date))
}

pub(super) fn parse_date(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Optional text; anything that is not a string reads as absent.
pub(super) fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::String(text)) => Some(text),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Ids {
        #[serde(deserialize_with = "lenient_u64")]
        id: u64,
        #[serde(default, deserialize_with = "optional_u64")]
        other: Option<u64>,
        #[serde(deserialize_with = "id_text")]
        text: String,
    }

    #[test]
    fn ids_may_be_numbers_or_strings_of_digits() {
        let ids: Ids =
            serde_json::from_str(r#"{"id":"123456789","other":42,"text":475684066}"#).unwrap();
        assert_eq!(
            (ids.id, ids.other, ids.text.as_str()),
            (123_456_789, Some(42), "475684066")
        );
        let ids: Ids =
            serde_json::from_str(r#"{"id":7,"other":"x","text":"000011122344"}"#).unwrap();
        assert_eq!(
            (ids.id, ids.other, ids.text.as_str()),
            (7, None, "000011122344")
        );
        assert!(serde_json::from_str::<Ids>(r#"{"id":"seven","text":"a"}"#).is_err());
    }

    #[test]
    fn dates_take_any_number_of_fractional_digits_and_any_offset() {
        for (text, nanos, offset_hours) in [
            ("2021-02-08T17:51:21.746608612Z", 746_608_612, 0),
            ("2026-11-20T11:02:10.000-03:00", 0, -3),
            ("2021-02-16T14:52:13.58-04:00", 580_000_000, -4),
            ("2020-12-05T20:01:46Z", 0, 0),
        ] {
            let date = parse_date(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(date.nanosecond(), nanos, "{text}");
            assert_eq!(date.offset().whole_hours(), offset_hours, "{text}");
        }
        assert_eq!(parse_date("2026-11-20 11:02:10"), None);
    }
}
