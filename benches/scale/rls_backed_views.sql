-- rowgate scale benchmark: an experiment, not part of the bench run. Measures the structural
-- fix for the joins and ORDER BY ... LIMIT that security_barrier views cannot plan well (see
-- BENCHMARKS.md, "Plan parity at scale"): plain (flattened) views owned by a dedicated
-- non-superuser role, over base tables whose RLS policy for that role is rowgate's rule,
-- gate included. Also probes that a non-leakproof predicate over a hidden row does not raise.
--
-- Run after `cargo bench --bench scale -- --scale 10 --keep` (caller anne; the hidden
-- invoice id below is the smallest one anne cannot see, 2 at every scale):
--   psql -h 127.0.0.1 -U postgres -d rg_bench_scale -f benches/scale/rls_backed_views.sql
-- RLS is already enabled on these tables by benches/scale/rls.sql (policies for another role).
-- Everything happens in one transaction that is rolled back (the role included).
\set QUIET on
\set ON_ERROR_STOP on
BEGIN;
CREATE ROLE rg_exp_owner NOLOGIN;
GRANT USAGE ON SCHEMA rowgate TO rg_exp_owner;
GRANT EXECUTE ON FUNCTION rowgate.caller_id() TO rg_exp_owner;
GRANT SELECT ON invoices, customers, transactions, orders, permissions, user_roles TO rg_exp_owner;
CREATE POLICY rg_exp ON invoices FOR SELECT TO rg_exp_owner USING ((SELECT rowgate.caller_id()) IS NOT NULL AND department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id()))));
CREATE POLICY rg_exp ON customers FOR SELECT TO rg_exp_owner USING ((SELECT rowgate.caller_id()) IS NOT NULL AND department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id()))));
CREATE POLICY rg_exp ON transactions FOR SELECT TO rg_exp_owner USING ((SELECT rowgate.caller_id()) IS NOT NULL AND department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = (SELECT rowgate.caller_id()))));
CREATE POLICY rg_exp ON orders FOR SELECT TO rg_exp_owner USING ((SELECT rowgate.caller_id()) IS NOT NULL AND user_id = (SELECT rowgate.caller_id()));
CREATE SCHEMA rgx;
CREATE VIEW rgx.invoices AS SELECT id, amount, issued_on, department, customer_id FROM public.invoices;
CREATE VIEW rgx.customers AS SELECT id, name, department, active, created_at FROM public.customers;
CREATE VIEW rgx.transactions AS SELECT * FROM public.transactions;
CREATE VIEW rgx.orders AS SELECT * FROM public.orders;
ALTER VIEW rgx.invoices OWNER TO rg_exp_owner;
ALTER VIEW rgx.customers OWNER TO rg_exp_owner;
ALTER VIEW rgx.transactions OWNER TO rg_exp_owner;
ALTER VIEW rgx.orders OWNER TO rg_exp_owner;
GRANT USAGE ON SCHEMA rgx TO rg_bench_scale_agent;
GRANT SELECT ON ALL TABLES IN SCHEMA rgx TO rg_bench_scale_agent;
SELECT encode(convert_to('anne','UTF8'),'hex') || '.' || encode(sha256(k.key || convert_to(encode(convert_to('anne','UTF8'),'hex'),'UTF8')),'hex') AS signed FROM rowgate_private.identity_key k \gset
SET LOCAL ROLE rg_bench_scale_agent;
SELECT set_config('rowgate.caller', :'signed', true) \g /dev/null
\o /dev/null
SELECT 1 FROM rgx.invoices LIMIT 1;
\o
\echo Q09 sb views
EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) WITH rg_c AS NOT MATERIALIZED (SELECT * FROM rowgate.customers), rg_i AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices), rg_t AS NOT MATERIALIZED (SELECT * FROM rowgate.transactions)
 SELECT c.name, i.id, t.amount, t.happened_at FROM rg_c c JOIN rg_i i ON i.customer_id = c.id JOIN rg_t t ON t.invoice_id = i.id WHERE c.id = 1001;
\echo Q09 RLS-backed plain views
EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) WITH rg_c AS NOT MATERIALIZED (SELECT * FROM rgx.customers), rg_i AS NOT MATERIALIZED (SELECT * FROM rgx.invoices), rg_t AS NOT MATERIALIZED (SELECT * FROM rgx.transactions)
 SELECT c.name, i.id, t.amount, t.happened_at FROM rg_c c JOIN rg_i i ON i.customer_id = c.id JOIN rg_t t ON t.invoice_id = i.id WHERE c.id = 1001;
\echo Q17 sb view
EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) WITH rg_orders AS NOT MATERIALIZED (SELECT * FROM rowgate.orders) SELECT id, total, status FROM rg_orders ORDER BY placed_at DESC LIMIT 20;
\echo Q17 RLS-backed
EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) WITH rg_orders AS NOT MATERIALIZED (SELECT * FROM rgx.orders) SELECT id, total, status FROM rg_orders ORDER BY placed_at DESC LIMIT 20;
\echo Q01 RLS-backed
EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rgx.invoices) SELECT id, amount, department FROM rg_invoices WHERE id = 13000;
\echo leak probe, RLS-backed: a non-leakproof division over a hidden row must not raise
SELECT count(*) FROM rgx.invoices WHERE 1 / (id - 2) = 0 AND amount > 0::numeric;
SELECT count(*) FROM rgx.invoices WHERE id = 2;
\echo same probe on the sb view
SELECT count(*) FROM rowgate.invoices WHERE 1 / (id - 2) = 0 AND amount > 0::numeric;
\echo probe by superuser without RLS: must raise
RESET ROLE;
SELECT count(*) FROM invoices WHERE 1 / (id - 2) = 0;
ROLLBACK;
