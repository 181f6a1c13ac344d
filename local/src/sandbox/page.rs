//! The HTML of the consent page and of the error page. Everything echoed is escaped.

use std::fmt::Write;

use http::StatusCode;

use super::buyer::{DEFAULT_BUYER_ID, DEFAULT_ITEM_ID};
use super::market::{Feed, Outcome, utc_date};
use super::state::ConsentRequest;

pub(super) const DEFAULT_USER_ID: u64 = 468_424_240;
pub(super) const DEFAULT_NICKNAME: &str = "SANDBOX_SELLER";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;\
padding:0 1rem;color:#333}h1{font-size:1.4rem}label{display:block;margin:.8rem 0}\
input{display:block;width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}code{word-break:break-all}\
textarea,select{display:block;width:100%;padding:.4rem;box-sizing:border-box}\
fieldset{margin:1.5rem 0}table{border-collapse:collapse;font-size:.85rem}\
td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:left}";

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

/// The sandbox's console: act as a buyer (each form creates the resource and sends its
/// notification), flip the fault switch, see the last notifications. Every action is a
/// plain form post: the page runs no script.
pub(super) fn console(recent: &[Feed], notification_url: Option<&str>) -> String {
    let target = match notification_url {
        Some(url) => format!("Notifications are POSTed to <code>{}</code>.", escape(url)),
        None => {
            "No notification URL is set: every notification is kept in missed_feeds.".to_owned()
        }
    };
    let deliver = r#"<label>Notification
<select name="deliver"><option value="true">send it</option>
<option value="false">lose it (only in missed_feeds)</option></select></label>"#;
    let mut sent = String::new();
    for feed in recent {
        let result = match &feed.outcome {
            Outcome::Answered { http_code, .. } => format!("HTTP {http_code}"),
            Outcome::Unanswered { reason } => escape(reason),
        };
        let _ = write!(
            sent,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{result}</td></tr>",
            utc_date(feed.sent_at),
            escape(&feed.topic),
            escape(feed.notification["resource"].as_str().unwrap_or_default()),
        );
    }
    if sent.is_empty() {
        sent.push_str("<tr><td colspan=\"4\">none yet</td></tr>");
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mercado Livre sandbox</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Mercado Livre sandbox</h1>
<p>{target}</p>
<form method="post" action="questions"><fieldset><legend>Ask a question as a buyer</legend>
<label>Seller user id
<input type="text" name="seller_id" value="{DEFAULT_USER_ID}" inputmode="numeric" required></label>
<label>Listing (item id)
<input type="text" name="item_id" value="{DEFAULT_ITEM_ID}" maxlength="40" required></label>
<label>Question
<textarea name="text" maxlength="2000" rows="3" required></textarea></label>
<input type="hidden" name="buyer_id" value="{DEFAULT_BUYER_ID}">
{deliver}
<button type="submit">Ask</button>
</fieldset></form>
<form method="post" action="orders"><fieldset><legend>Buy as a buyer</legend>
<label>Seller user id
<input type="text" name="seller_id" value="{DEFAULT_USER_ID}" inputmode="numeric" required></label>
<label>Title
<input type="text" name="title" value="Sandbox item" maxlength="120" required></label>
<label>Quantity
<input type="text" name="quantity" value="1" inputmode="numeric" required></label>
<label>Unit price (BRL)
<input type="text" name="unit_price" value="100.00" inputmode="decimal" required></label>
{deliver}
<button type="submit">Buy</button>
</fieldset></form>
<form method="post" action="messages"><fieldset><legend>Write to the seller after a sale</legend>
<label>Order id
<input type="text" name="order_id" inputmode="numeric" required></label>
<label>Message
<textarea name="text" maxlength="3500" rows="3" required></textarea></label>
{deliver}
<button type="submit">Send</button>
</fieldset></form>
<form method="post" action="faults"><fieldset><legend>Fault switch (the API a seller's token calls)</legend>
<label>Answer with
<select name="mode"><option value="429">429 Too Many Requests</option>
<option value="500">500</option><option value="503">503</option>
<option value="none">normal answers</option></select></label>
<label>For the next N calls (empty: until switched off)
<input type="text" name="count" value="1" inputmode="numeric"></label>
<button type="submit">Set</button>
</fieldset></form>
<h2>Last notifications</h2>
<table><tr><th>sent</th><th>topic</th><th>resource</th><th>result</th></tr>
{sent}</table>
</body>
</html>
"#
    )
}

/// The page a console form gets back.
pub(super) fn result(title: &str, lines: &[String]) -> String {
    let title = escape(title);
    let mut body = String::new();
    for line in lines {
        let _ = write!(body, "<p>{}</p>", escape(line));
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mercado Livre sandbox: {title}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{title}</h1>
{body}
<p><a href="console">Back to the sandbox console</a></p>
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
