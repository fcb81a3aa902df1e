//! The SQL of the functions that verify the signed caller: `caller_id()`, `fenced_caller(t)`
//! (the gate of every row-security view, with its fence check) and `caller_exists()` (the
//! policy's `exists` query for the verified caller). One text does the verification for all
//! three, so they cannot drift apart.

use super::*;

/// `caller_exists()` runs on every request, so it is PL/pgSQL: its plan is cached per session.
/// A SQL-language function cannot be inlined when it is SECURITY DEFINER, and is then planned
/// anew on every call (measured: 40 µs a request, a third of the gateway's database time).
/// PL/pgSQL resolves the policy's table names when it runs, not when it is created, so its
/// `search_path` is the one the install itself runs under (see [`SETTINGS`]): the names mean
/// what they mean in the views.
const EXISTS_HEAD: &str = "CREATE OR REPLACE FUNCTION rowgate.caller_exists() RETURNS boolean \
     LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS ";

/// `rowgate.caller_id()`: fixed text (no policy fragment). PL/pgSQL because it must raise.
///
/// The format check comes first so that nothing but `<even-length lowercase hex>.<64 hex>`
/// reaches `decode` or `convert_from`: exactly one dot (the value is the two parts joined),
/// and nothing but the sixteen hex digits in either part. It is written with `ltrim` rather
/// than the equivalent regular expression because the function runs once per policy-table
/// reference of every query: measured on PostgreSQL 15, the regular expression was 40% of
/// its time (13 µs a call, 7 µs without). The digest is the one [`IdentityKey::sign`] makes:
/// sha256(key ‖ payload as ASCII). `search_path` is pinned because the function runs with
/// its owner's rights; the only table it reads is schema-qualified anyway.
pub(super) fn caller_id_sql() -> String {
    identity_function_sql(Verifier::CallerId)
}

/// `rowgate.fenced_caller(t)`: `caller_id()`, and in the same statement that reads the key, a
/// check that `t`'s fence (see `row_security`) still stands for `owner`, raising 42501 if not.
/// It is the gate of every row-security view, so the check costs one more catalog look-up in
/// a call the view makes anyway, instead of an InitPlan of its own (~0.07 ms of planning and
/// ~0.02 ms of execution a reference, measured in BENCHMARKS.md). It runs while the query
/// holds its lock on `t`, which `ALTER TABLE`, `ALTER POLICY` and `DROP POLICY` must wait for,
/// so what it saw holds until the query ends.
pub(super) fn fenced_caller_sql(owner: &str) -> String {
    identity_function_sql(Verifier::Fenced { owner })
}

/// The fence of table `t` for role `owner`: row-level security on, and a restrictive
/// `rowgate_rows` for SELECT that applies to `owner` (or PUBLIC, 0), who must not be exempt from the table's
/// policies by owning it, by membership or as a superuser (`pg_has_role` covers all three).
/// Not checked here: BYPASSRLS (`serve` refuses to start with it; reading `pg_roles` would
/// double the check's cost) and `ALTER POLICY ... USING`, which rewrites the rule rather than
/// taking it down.
fn fence_holds_sql(owner: &str) -> String {
    let owner = quote_literal(&ident(owner).to_string());
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c \
         JOIN pg_catalog.pg_policy AS p ON p.polrelid = c.oid \
         WHERE c.oid = t AND c.relrowsecurity \
           AND p.polname = {rows} AND NOT p.polpermissive AND p.polcmd IN ('r', '*') \
           AND p.polroles && ARRAY[0, {owner}::pg_catalog.regrole]::pg_catalog.oid[] \
           AND NOT pg_catalog.pg_has_role({owner}::pg_catalog.regrole, c.relowner, 'USAGE'))",
        rows = quote_literal(row_security::ROWS_POLICY),
    )
}

/// What `fenced_caller()` does when the fence is down.
const FENCE_DOWN: &str = "
    IF rowgate_fenced IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = pg_catalog.format('rowgate: %s is no longer fenced by its row-level security policy', t),
            HINT = 'Run rowgate install again.';
    END IF;";

/// The three functions that verify the signed caller, one text for the verification.
pub(super) enum Verifier<'a> {
    /// `caller_id()`: the verified caller's id.
    CallerId,
    /// `fenced_caller(t)`: the same, once `t`'s fence for role `owner` is checked.
    Fenced { owner: &'a str },
    /// `caller_exists()`: whether the policy's `exists` query, `check` (which reads the
    /// verified id from the variable [`VERIFIED_CALLER`]), finds the caller. Verifying here
    /// instead of calling `caller_id()` saves a SECURITY DEFINER call on every request (11–16%
    /// more transactions of the caller statement in pgbench, BENCHMARKS.md). Its variables are
    /// all `rowgate_`-prefixed, since the policy's query sees them: a column of the same name
    /// makes PL/pgSQL refuse the ambiguity at run time (closed, not open).
    Exists { check: &'a str },
}

/// `caller_id()`, `fenced_caller(t)` or `caller_exists()`. The first two are PARALLEL
/// RESTRICTED (as is `caller_attributes()`): a query that calls a PARALLEL UNSAFE function
/// gets no parallel plan at all, and every agent query calls these; row-level security's own
/// queries got parallel scans where rowgate's could not (BENCHMARKS.md, Q21). Restricted, they
/// run only in the leader, once per query in their InitPlans; they write nothing and catch no
/// error, and the `SET search_path` of a function call is allowed in parallel mode.
/// `caller_exists()` runs alone in the gateway's caller statement, and under the install's
/// `search_path` (see [`EXISTS_HEAD`]); the verification names everything it uses.
pub(super) fn identity_function_sql(verifier: Verifier<'_>) -> String {
    let verified = "pg_catalog.convert_from(pg_catalog.decode(rowgate_payload, 'hex'), 'UTF8')";
    let (head, fenced, fence_check, variable, end) = match verifier {
        Verifier::CallerId => (
            identity_head("caller_id()", "text"),
            "TRUE".to_string(),
            String::new(),
            String::new(),
            format!("RETURN {verified};"),
        ),
        Verifier::Fenced { owner } => (
            identity_head("fenced_caller(t regclass)", "text"),
            fence_holds_sql(owner),
            FENCE_DOWN.to_string(),
            String::new(),
            format!("RETURN {verified};"),
        ),
        Verifier::Exists { check } => (
            EXISTS_HEAD.to_string(),
            "TRUE".to_string(),
            String::new(),
            format!("\n    {VERIFIED_CALLER} text;"),
            format!("{VERIFIED_CALLER} := {verified};\n    RETURN {check};"),
        ),
    };
    let body = format!(
        "
DECLARE
    rowgate_signed text := pg_catalog.current_setting({setting}, true);
    rowgate_payload text := pg_catalog.split_part(rowgate_signed, '.', 1);
    rowgate_digest text := pg_catalog.split_part(rowgate_signed, '.', 2);
    rowgate_key bytea;
    rowgate_fenced boolean;{variable}
BEGIN
    IF rowgate_signed IS NULL
       OR rowgate_signed <> rowgate_payload || '.' || rowgate_digest
       OR pg_catalog.length(rowgate_digest) <> 64
       OR rowgate_payload = ''
       OR pg_catalog.length(rowgate_payload) % 2 <> 0
       OR pg_catalog.ltrim(rowgate_payload || rowgate_digest, '0123456789abcdef') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = {code}, MESSAGE = {message};
    END IF;
    SELECT k.key, {fenced} INTO rowgate_key, rowgate_fenced FROM rowgate_private.identity_key AS k;
    IF rowgate_key IS NULL
       OR pg_catalog.encode(pg_catalog.sha256(rowgate_key || pg_catalog.convert_to(rowgate_payload, 'UTF8')), 'hex')
          <> rowgate_digest THEN
        RAISE EXCEPTION USING ERRCODE = {code}, MESSAGE = {message};
    END IF;{fence_check}
    {end}
END
",
        setting = quote_literal(SETTING),
        code = quote_literal(NO_CALLER_SQLSTATE),
        message = quote_literal(NO_CALLER_MESSAGE),
    );
    // The policy's `exists` query is part of the body: the tag must be one it does not hold.
    format!("{head}{}", dollar_quoted(&body))
}

fn identity_head(signature: &str, returns: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION rowgate.{signature} RETURNS {returns}
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS "
    )
}
