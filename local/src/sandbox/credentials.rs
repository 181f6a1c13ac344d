//! The random values the sandbox hands out, shaped like Mercado Livre's:
//! `TG-<hex>-<user_id>` codes and refresh tokens, and
//! `APP_USR-<app number>-<MMDDHH>-<32 hex>-<user_id>` access tokens.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::error::Unspecified;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Identifies a consent page: 128 random bits.
pub(super) fn request_id(random: &SystemRandom) -> Result<String, Unspecified> {
    random_hex::<16>(random)
}

/// 128 random bits.
pub(super) fn authorization_code(
    random: &SystemRandom,
    user_id: u64,
) -> Result<String, Unspecified> {
    Ok(format!("TG-{}-{user_id}", random_hex::<16>(random)?))
}

/// 128 random bits.
pub(super) fn access_token(
    random: &SystemRandom,
    app_number: &str,
    user_id: u64,
    issued_at: SystemTime,
) -> Result<String, Unspecified> {
    let stamp = month_day_hour(issued_at);
    let secret = random_hex::<16>(random)?;
    Ok(format!("APP_USR-{app_number}-{stamp}-{secret}-{user_id}"))
}

/// Mercado Livre's refresh tokens carry 24 hex digits, so this shape holds 96 random bits:
/// beyond reach of guessing against a server on 127.0.0.1, and what the app will receive
/// from the real provider.
pub(super) fn refresh_token(random: &SystemRandom, user_id: u64) -> Result<String, Unspecified> {
    Ok(format!("TG-{}-{user_id}", random_hex::<12>(random)?))
}

/// Mercado Livre client ids are numbers, and access tokens carry them. A sandbox client id
/// that is not a number gets a stable number derived from it.
pub(super) fn app_number(client_id: &str) -> String {
    if !client_id.is_empty() && client_id.bytes().all(|b| b.is_ascii_digit()) {
        return client_id.to_owned();
    }
    let hash = digest(&SHA256, client_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    (u64::from_be_bytes(first) % 10_u64.pow(16)).to_string()
}

/// The issue time stamped into access tokens, in Brasília time (UTC−3, no daylight saving
/// since 2019) as Mercado Livre does.
pub(super) fn month_day_hour(at: SystemTime) -> String {
    const BRASILIA_OFFSET_SECS: i64 = -3 * 3600;
    let unix_secs = at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    });
    let local_secs = unix_secs + BRASILIA_OFFSET_SECS;
    let (month, day) = month_and_day(local_secs.div_euclid(86_400));
    let hour = local_secs.rem_euclid(86_400) / 3600;
    format!("{month:02}{day:02}{hour:02}")
}

/// Month and day of a day counted from 1970-01-01 (H. Hinnant's `civil_from_days`).
fn month_and_day(days_since_epoch: i64) -> (i64, i64) {
    let days = days_since_epoch + 719_468;
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    (month, day)
}

fn random_hex<const N: usize>(random: &SystemRandom) -> Result<String, Unspecified> {
    let mut bytes = [0u8; N];
    random.fill(&mut bytes)?;
    let mut hex = String::with_capacity(2 * N);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}
