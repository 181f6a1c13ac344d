//! The rule that keeps tokens and secrets out of logs. Every field and message goes
//! through it on the way to a log line: a field whose name says it holds a secret is
//! replaced whole, and token-shaped text is masked wherever it appears.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex_lite::Regex;

pub const REDACTED: &str = "[REDACTED]";

/// Field names (lowercase substrings) whose values are never logged.
const SECRET_NAMES: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "cookie",
    "signature",
    "verifier",
    "credential",
    "api_key",
    "apikey",
    "private_key",
];

pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| name.contains(secret))
}

/// Token shapes masked wherever they appear in text.
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Authorization header values.
        (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", "$1 [REDACTED]"),
        // JWT / JWS compact form.
        (r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", REDACTED),
        // Mercado Livre access and refresh tokens.
        (r"\b(APP_USR|TG)-[A-Za-z0-9-]{8,}", REDACTED),
        // HMAC signatures as Meta sends them.
        (r"\bsha256=[0-9a-fA-F]{16,}", "sha256=[REDACTED]"),
        // name=value / "name": "value" pairs whose name says secret.
        (
            r#"(?i)\b([a-z_]*(?:token|secret|password|verifier|api_?key|cookie|signature)[a-z_]*)("?\s*[:=]\s*"?)[^"\s&,;}]+"#,
            "$1$2[REDACTED]",
        ),
    ]
    .into_iter()
    .filter_map(|(pattern, replacement)| Regex::new(pattern).ok().map(|regex| (regex, replacement)))
    .collect()
});

/// Lowercase text every token shape above contains: text with none of them is clean,
/// without running the patterns (they run on every value of every log line).
const TRIGGERS: &[&str] = &[
    "bearer",
    "basic",
    "eyj",
    "app_usr-",
    "tg-",
    "sha256=",
    "token",
    "secret",
    "password",
    "verifier",
    "apikey",
    "api_key",
    "cookie",
    "signature",
];

/// `text` with every token-shaped part masked.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    if !TRIGGERS.iter().any(|trigger| lower.contains(trigger)) {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for (regex, replacement) in PATTERNS.iter() {
        if regex.is_match(&out) {
            out = Cow::Owned(regex.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

/// The value to log for field `name`.
pub fn redact_field<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    if is_secret_name(name) {
        Cow::Borrowed(REDACTED)
    } else {
        redact_text(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_field_names_are_replaced_whole() {
        for name in [
            "access_token",
            "refreshToken",
            "client_secret",
            "Authorization",
            "cookie",
            "code_verifier",
        ] {
            assert_eq!(redact_field(name, "anything at all"), REDACTED, "{name}");
        }
        assert_eq!(redact_field("seller_id", "123"), "123");
    }

    #[test]
    fn token_shapes_are_masked_inside_text() {
        let cases = [
            (
                "auth Bearer abc.def-ghi done",
                "auth Bearer [REDACTED] done",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end",
                "jwt [REDACTED] end",
            ),
            (
                "ml APP_USR-1234567-112233-abcdef0123456789-99 ok",
                "ml [REDACTED] ok",
            ),
            (
                "refresh TG-5f1c2a3b4c5d6e7f8a9b-123 ok",
                "refresh [REDACTED] ok",
            ),
            (
                "sig sha256=a0573f063a0beb4659e376ad26bb39dd",
                "sig sha256=[REDACTED]",
            ),
            (
                r#"{"refresh_token":"r-1","user":"u"}"#,
                r#"{"refresh_token":"[REDACTED]","user":"u"}"#,
            ),
            (
                "?code_verifier=abc&state=1",
                "?code_verifier=[REDACTED]&state=1",
            ),
            ("client_secret = hunter2", "client_secret = [REDACTED]"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_text(input), expected, "{input}");
        }
    }

    #[test]
    fn plain_text_is_left_alone() {
        let text = "GET /health 200 in 3 ms for seller 12345";
        assert!(matches!(redact_text(text), Cow::Borrowed(_)));
    }

    #[test]
    fn every_pattern_has_a_trigger() {
        // Each sample is masked: the pre-check lets every token shape through to its
        // pattern.
        for sample in [
            "Authorization: BEARER abc.def",
            "basic dXNlcjpwYXNz",
            "eyJhbGciOi.eyJzdWIiOi.c2ln",
            "APP_USR-6092-112018-0a1b2c3d4e5f",
            "TG-0a1b2c3d4e5f60718293a4b5-468424240",
            "sha256=a0573f063a0beb4659e376ad26bb39dd",
            "access_token=abc",
            "\"client_secret\": \"abc\"",
            "password=hunter2",
            "code_verifier=abc",
            "x_api_key=abc",
            "apikey: abc",
            "session_cookie=abc",
            "Signature=abc",
        ] {
            assert!(redact_text(sample).contains("[REDACTED]"), "{sample}");
        }
        let clean = "request served /webhooks/meta 018f6a2c-5c5e-7b1e-9d3e-2f1e0a9b8c7d";
        assert!(matches!(redact_text(clean), Cow::Borrowed(_)));
    }
}
