//! Fast paths for the JSON the API writes most: RFC 3339 timestamps and whole response bodies.
//!
//! A history page holds 150 timestamps; formatting them through chrono cost about a tenth of
//! the server's time per page, and growing the response buffer from a small default another
//! few percent (measured with `examples/http_bench.rs`).

use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};
use tidings::Timestamp;

use crate::problem::Problem;

/// Serializes a timestamp exactly as the core does (`2026-12-03T16:40:00.000000Z`), without
/// allocating.
pub(crate) fn timestamp<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 27];
    match format_rfc3339(*t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&t.to_rfc3339()),
    }
}

/// [`timestamp`] for an optional one.
pub(crate) fn opt_timestamp<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => timestamp(t, s),
        None => s.serialize_none(),
    }
}

/// Formats years 0000 to 9999; `None` outside them (the caller falls back to chrono).
fn format_rfc3339(t: Timestamp, buf: &mut [u8; 27]) -> Option<&str> {
    let micros = t.as_micros();
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut put = |at: usize, value: i64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, sod / 3600, 2);
    put(14, sod / 60 % 60, 2);
    put(17, sod % 60, 2);
    put(20, frac, 6);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    buf[26] = b'Z';
    std::str::from_utf8(&buf[..]).ok()
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A `200 application/json` response serialized into a buffer sized up front.
#[derive(Debug)]
pub(crate) struct JsonResponse<T>(pub(crate) T, pub(crate) usize);

impl<T: Serialize> IntoResponse for JsonResponse<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.1);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => {
                let mut response = body.into_response();
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "a response could not be serialized");
                Problem::internal().into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_exactly_as_the_core_does() {
        let mut samples = vec![
            0,
            -1,
            1,
            999_999,
            1_767_225_600_000_000,
            1_767_225_599_999_999,
            951_782_400_000_000,     // 2000-02-29
            4_107_542_399_999_999,   // 2100-02-28T23:59:59.999999
            -62_135_596_800_000_000, // 0001-01-01
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(
                x.rem_euclid(253_402_300_800_000_000 + 62_135_596_800_000_000)
                    - 62_135_596_800_000_000,
            );
        }
        for micros in samples {
            let t = Timestamp::from_micros(micros);
            let ours = serde_json::to_string(&Wrapper(t)).unwrap();
            let core = serde_json::to_string(&t).unwrap();
            assert_eq!(ours, core, "{micros}");
        }
    }

    struct Wrapper(Timestamp);

    impl Serialize for Wrapper {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            timestamp(&self.0, s)
        }
    }
}
