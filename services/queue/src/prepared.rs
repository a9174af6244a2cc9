//! Hand-written SQL that PostgreSQL keeps prepared.
//!
//! diesel prepares most statements its query builder makes once per connection, but never
//! one from `sql_query`: that text may be built at run time, and caching every variant
//! would grow the cache without bound, so it is parsed and planned on every call. Nor does
//! it keep any query-builder `UPDATE`, `INSERT` of a `Vec` or `ON CONFLICT ... DO UPDATE`
//! prepared (diesel 2.3 marks them unsafe to cache, as a changeset's text may change with
//! its values), so such a statement is parsed and planned on every execution. Statements
//! the query builder cannot express (a
//! CTE, `UPDATE ... FROM unnest(...)`) still have one fixed text too. [`prepared_sql`]
//! takes only a `&'static str`, so the cache holds one entry per such statement in the
//! program, keyed by its text and bind types.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::Error;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::QueryResult;

/// A fixed SQL statement, prepared on its first use on a connection and reused after.
///
/// Its placeholders are `$1`, `$2`, ..., first used in that order (any of them may be used
/// again later), and bound with [`PreparedSql::bind`] in the same order. Rows load with
/// `QueryableByName`, as with `sql_query`.
///
/// A prepared statement may run on a generic plan (the services' pooled sessions always
/// do, `plan_cache_mode = force_generic_plan`), made once and kept until its tables are
/// analyzed: write it so that its plan needs no statistics (lookups by key). Made on a
/// small table, such a plan may still read the table in full; the pooled sessions rule
/// that out (`enable_seqscan = off`).
pub fn prepared_sql(sql: &'static str) -> PreparedSql<NoBinds> {
    PreparedSql {
        sql,
        binds: NoBinds,
    }
}

#[derive(Debug, Clone, Copy)]
#[must_use = "queries are only executed when loaded or executed"]
pub struct PreparedSql<B> {
    sql: &'static str,
    binds: B,
}

impl<B: Binds> PreparedSql<B> {
    /// Binds the next placeholder.
    pub fn bind<ST, V>(self, value: V) -> PreparedSql<Bind<B, ST, V>> {
        PreparedSql {
            sql: self.sql,
            binds: Bind {
                earlier: self.binds,
                value,
                _type: PhantomData,
            },
        }
    }
}

/// No value bound yet.
#[derive(Debug, Clone, Copy)]
pub struct NoBinds;

/// The values bound so far: `earlier`, then this one.
#[derive(Debug, Clone, Copy)]
pub struct Bind<B, ST, V> {
    earlier: B,
    value: V,
    _type: PhantomData<ST>,
}

/// A list of bound values that writes itself into the statement, each value's placeholder
/// followed by the text up to the next one.
pub trait Binds {
    const COUNT: usize;
    fn walk<'b>(&'b self, text: &[&'static str], out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl Binds for NoBinds {
    const COUNT: usize = 0;
    fn walk<'b>(&'b self, _text: &[&'static str], _out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

impl<B, ST, V> Binds for Bind<B, ST, V>
where
    B: Binds,
    Pg: HasSqlType<ST>,
    ST: diesel::sql_types::SqlType,
    V: ToSql<ST, Pg>,
{
    const COUNT: usize = B::COUNT + 1;
    fn walk<'b>(&'b self, text: &[&'static str], mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.earlier.walk(text, out.reborrow())?;
        // diesel writes the n-th bind's placeholder as `$n`: the text comes out as written.
        out.push_bind_param::<ST, V>(&self.value)?;
        out.push_sql(text[Self::COUNT]);
        Ok(())
    }
}

/// The text around the first appearance of each placeholder: n + 1 pieces for `$1` to
/// `$n`. Fails unless each first appears after the one before it; a later use of a
/// placeholder stays in the text, where PostgreSQL reads it as the same parameter.
fn split_at_placeholders(sql: &'static str) -> QueryResult<Vec<&'static str>> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut next = 1;
    let mut from = 0;
    while let Some(found) = sql[from..].find('$') {
        let at = from + found;
        let digits = sql[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(sql.len() - at - 1);
        if digits == 0 {
            // A `$` that is not a placeholder (a dollar-quoted string, say) is not supported.
            return Err(builder_error(format!(
                "a '$' that is not a placeholder in {sql:?}"
            )));
        }
        let end = at + 1 + digits;
        let number: usize = sql[at + 1..end].parse().unwrap_or(usize::MAX);
        if number == next {
            pieces.push(&sql[piece_start..at]);
            piece_start = end;
            next += 1;
        } else if number > next {
            return Err(builder_error(format!(
                "${number} appears before ${next} in {sql:?}"
            )));
        }
        from = end;
    }
    pieces.push(&sql[piece_start..]);
    Ok(pieces)
}

fn builder_error(message: String) -> Error {
    Error::QueryBuilderError(format!("prepared_sql: {message}").into())
}

impl<B: Binds> QueryFragment<Pg> for PreparedSql<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Unlike `sql_query`, this does not mark the statement unsafe to cache: its text
        // is static, so the statement cache keys on it.
        let text = split_at_placeholders(self.sql)?;
        if text.len() != B::COUNT + 1 {
            return Err(builder_error(format!(
                "{} placeholders but {} values bound",
                text.len() - 1,
                B::COUNT
            )));
        }
        out.push_sql(text[0]);
        self.binds.walk(&text, out.reborrow())
    }
}

impl<B> QueryId for PreparedSql<B> {
    type QueryId = ();
    // No static id: the cache keys on the SQL text and bind types, one entry per statement.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for PreparedSql<B> {
    type SqlType = Untyped;
}
