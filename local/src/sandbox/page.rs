//! The HTML of the consent page and of the error page. Everything echoed is escaped.

use http::StatusCode;

use super::state::ConsentRequest;

pub(super) const DEFAULT_USER_ID: u64 = 468_424_240;
pub(super) const DEFAULT_NICKNAME: &str = "SANDBOX_SELLER";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;\
padding:0 1rem;color:#333}h1{font-size:1.4rem}label{display:block;margin:.8rem 0}\
input{display:block;width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}code{word-break:break-all}";

/// The page the seller answers; it is submitted only by a click on one of its buttons.
pub(super) fn consent(request_id: &str, request: &ConsentRequest) -> String {
    let request_id = escape(request_id);
    let client_id = escape(&request.client_id);
    let redirect_uri = escape(&request.redirect_uri);
    let nickname = escape(DEFAULT_NICKNAME);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mercado Livre sandbox: authorize application</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Mercado Livre sandbox</h1>
<p>The application <strong>{client_id}</strong> asks for access to your seller account
(offline_access read write). Your answer is sent to <code>{redirect_uri}</code>.</p>
<form method="post" action="authorization">
<input type="hidden" name="request_id" value="{request_id}">
<label>Seller user id
<input type="text" name="user_id" value="{DEFAULT_USER_ID}" inputmode="numeric" required></label>
<label>Nickname
<input type="text" name="nickname" value="{nickname}" maxlength="64" required></label>
<button type="submit" name="decision" value="allow">Authorize</button>
<button type="submit" name="decision" value="deny" formnovalidate>Cancel</button>
</form>
</body>
</html>
"#
    )
}

pub(super) fn error(status: StatusCode, message: &str) -> String {
    let status = status.as_u16();
    let message = escape(message);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mercado Livre sandbox: error {status}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Mercado Livre sandbox: the request was refused</h1>
<p>{message}</p>
</body>
</html>
"#
    )
}

pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
