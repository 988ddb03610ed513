//! Hand-written SQL with typed binds that diesel-async keeps as prepared statements.
//!
//! `diesel::sql_query` marks every query unsafe to cache, so each call would be prepared again
//! (an extra round trip). [`Sql`] renders the same text and binds but tells diesel the statement
//! may be cached: diesel-async then keys its statement cache by the SQL text.

use diesel::pg::data_types::PgTimestamp;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{self as st, Array, Nullable};
use diesel::QueryResult;
use tidings::Timestamp;
use uuid::Uuid;

/// Microseconds from the UNIX epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET: i64 = 946_684_800_000_000;
/// PostgreSQL's smallest and largest finite `timestamptz`, in its own microseconds.
const PG_MIN: i64 = -211_813_488_000_000_000;
const PG_MAX: i64 = 9_223_371_331_200_000_000 - 1;

/// A core timestamp as PostgreSQL's; out-of-range values become -infinity / infinity.
pub(crate) fn ts(t: Timestamp) -> PgTimestamp {
    let pg = t.as_micros().saturating_sub(PG_EPOCH_OFFSET);
    PgTimestamp(if pg < PG_MIN {
        i64::MIN
    } else if pg > PG_MAX {
        i64::MAX
    } else {
        pg
    })
}

/// PostgreSQL's timestamp as a core one (exact for every finite value).
pub(crate) fn from_ts(t: PgTimestamp) -> Timestamp {
    match t.0 {
        // -infinity and infinity.
        i64::MIN => Timestamp::from_micros(i64::MIN),
        i64::MAX => Timestamp::from_micros(i64::MAX),
        pg => Timestamp::from_micros(pg.saturating_add(PG_EPOCH_OFFSET)),
    }
}

/// One bind value.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(String),
    OptText(Option<String>),
    Ts(PgTimestamp),
    OptTs(Option<PgTimestamp>),
    BigInt(i64),
    OptBigInt(Option<i64>),
    SmallInt(i16),
    SmallIntArr(Vec<i16>),
    OptBigIntArr(Vec<Option<i64>>),
    Bool(bool),
    Bytes(Vec<u8>),
    UuidArr(Vec<Uuid>),
    TextArr(Vec<String>),
    OptTextArr(Vec<Option<String>>),
    TsArr(Vec<PgTimestamp>),
    OptTsArr(Vec<Option<PgTimestamp>>),
}

impl From<Uuid> for Bind {
    fn from(v: Uuid) -> Self {
        Bind::Uuid(v)
    }
}
impl From<Option<Uuid>> for Bind {
    fn from(v: Option<Uuid>) -> Self {
        Bind::OptUuid(v)
    }
}
impl From<&str> for Bind {
    fn from(v: &str) -> Self {
        Bind::Text(v.to_owned())
    }
}
impl From<String> for Bind {
    fn from(v: String) -> Self {
        Bind::Text(v)
    }
}
impl From<Option<String>> for Bind {
    fn from(v: Option<String>) -> Self {
        Bind::OptText(v)
    }
}
impl From<Timestamp> for Bind {
    fn from(v: Timestamp) -> Self {
        Bind::Ts(ts(v))
    }
}
impl From<Option<Timestamp>> for Bind {
    fn from(v: Option<Timestamp>) -> Self {
        Bind::OptTs(v.map(ts))
    }
}
impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::BigInt(v)
    }
}
impl From<Option<i64>> for Bind {
    fn from(v: Option<i64>) -> Self {
        Bind::OptBigInt(v)
    }
}
impl From<i16> for Bind {
    fn from(v: i16) -> Self {
        Bind::SmallInt(v)
    }
}
impl From<bool> for Bind {
    fn from(v: bool) -> Self {
        Bind::Bool(v)
    }
}

/// A statement: SQL text with `$1`, `$2`, … placeholders and the values they stand for.
///
/// A placeholder may appear more than once; each occurrence is sent as its own parameter.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    /// A statement from `text`.
    pub(crate) fn new(text: String) -> Self {
        Sql {
            text,
            binds: Vec::new(),
        }
    }

    /// Appends the value of the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Bind>) -> Self {
        self.binds.push(value.into());
        self
    }

    /// Appends a raw bind value.
    pub(crate) fn bind_raw(mut self, value: Bind) -> Self {
        self.binds.push(value);
        self
    }
}

impl QueryId for Sql {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql {
    type SqlType = st::Untyped;
}

impl QueryFragment<Pg> for Sql {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let text = self.text.as_str();
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                out.push_sql(&text[start..i]);
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                let n: usize = text[i + 1..j]
                    .parse()
                    .map_err(|_| bad_placeholder(&text[i..j]))?;
                let bind = n
                    .checked_sub(1)
                    .and_then(|k| self.binds.get(k))
                    .ok_or_else(|| bad_placeholder(&text[i..j]))?;
                push(&mut out, bind)?;
                start = j;
                i = j;
            } else {
                i += 1;
            }
        }
        out.push_sql(&text[start..]);
        Ok(())
    }
}

fn bad_placeholder(p: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(format!("no bind value for placeholder {p}").into())
}

fn push<'b>(out: &mut AstPass<'_, 'b, Pg>, bind: &'b Bind) -> QueryResult<()> {
    match bind {
        Bind::Uuid(v) => out.push_bind_param::<st::Uuid, _>(v),
        Bind::OptUuid(v) => out.push_bind_param::<Nullable<st::Uuid>, _>(v),
        Bind::Text(v) => out.push_bind_param::<st::Text, _>(v),
        Bind::OptText(v) => out.push_bind_param::<Nullable<st::Text>, _>(v),
        Bind::Ts(v) => out.push_bind_param::<st::Timestamptz, _>(v),
        Bind::OptTs(v) => out.push_bind_param::<Nullable<st::Timestamptz>, _>(v),
        Bind::BigInt(v) => out.push_bind_param::<st::BigInt, _>(v),
        Bind::OptBigInt(v) => out.push_bind_param::<Nullable<st::BigInt>, _>(v),
        Bind::SmallInt(v) => out.push_bind_param::<st::SmallInt, _>(v),
        Bind::SmallIntArr(v) => out.push_bind_param::<Array<st::SmallInt>, _>(v),
        Bind::OptBigIntArr(v) => out.push_bind_param::<Array<Nullable<st::BigInt>>, _>(v),
        Bind::Bool(v) => out.push_bind_param::<st::Bool, _>(v),
        Bind::Bytes(v) => out.push_bind_param::<st::Binary, _>(v),
        Bind::UuidArr(v) => out.push_bind_param::<Array<st::Uuid>, _>(v),
        Bind::TextArr(v) => out.push_bind_param::<Array<st::Text>, _>(v),
        Bind::OptTextArr(v) => out.push_bind_param::<Array<Nullable<st::Text>>, _>(v),
        Bind::TsArr(v) => out.push_bind_param::<Array<st::Timestamptz>, _>(v),
        Bind::OptTsArr(v) => out.push_bind_param::<Array<Nullable<st::Timestamptz>>, _>(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_exactly_and_too_early_becomes_minus_infinity() {
        let t = Timestamp::from_micros(1_767_225_600_123_456);
        assert_eq!(from_ts(ts(t)), t);
        // The far end of core's range is still a finite PostgreSQL time (year 294247).
        let far = Timestamp::from_micros(i64::MAX);
        assert_eq!(from_ts(ts(far)), far);
        // Before 4713 BC becomes -infinity, which still compares before every finite time.
        assert_eq!(ts(Timestamp::from_micros(i64::MIN)), PgTimestamp(i64::MIN));
        assert_eq!(
            from_ts(PgTimestamp(i64::MIN)),
            Timestamp::from_micros(i64::MIN)
        );
    }

    #[test]
    fn repeated_and_unknown_placeholders() {
        let q = Sql::new("SELECT $1, $2, $1".into()).bind(1i64).bind(true);
        let text = diesel::debug_query::<Pg, _>(&q).to_string();
        assert!(text.starts_with("SELECT $1, $2, $3"), "{text}");
        let bad = Sql::new("SELECT $2".into()).bind(1i64);
        let mut qb = diesel::pg::PgQueryBuilder::default();
        assert!(bad.to_sql(&mut qb, &Pg).is_err());
    }
}
