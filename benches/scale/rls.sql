-- rowgate scale benchmark, arm "RLS": the rules of policies/demo.yaml as PostgreSQL row-level
-- security policies on the base tables, for a role that owns none of them. The caller is
-- carried in the custom setting app.user_id (SET app.user_id = 'anne'), read with
-- current_setting('app.user_id') inside each policy, the usual way with a pooled connection.
-- current_setting() is STABLE, so it can drive an index scan, but it is not leakproof.
--
-- The role is the benchmark's own (dropped at the end). Each rule is a RESTRICTIVE policy
-- behind a permissive `true`: rowgate's install left a permissive pass-through policy for every
-- role on these tables (rowgate_others), which would otherwise widen a permissive rule to every
-- row. The plans are the same as for a lone permissive rule. rowgate's own policies name only
-- its views' owner role, so the arms do not affect each other.

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rg_bench_scale_rls') THEN
        CREATE ROLE rg_bench_scale_rls NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO rg_bench_scale_rls;
-- The tables the policies read must be readable by the role itself (RLS subqueries run with
-- the querying role's rights), unlike rowgate's views, which read them as their owner.
GRANT SELECT ON invoices, transactions, orders, order_items, folders, documents, blocks, items,
                app_users, user_roles, permissions, folder_access, item_users TO rg_bench_scale_rls;
GRANT SELECT (id, name, department, active, created_at) ON customers TO rg_bench_scale_rls;

ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE folders ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE blocks ENABLE ROW LEVEL SECURITY;
ALTER TABLE items ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS rg_bench ON invoices;
DROP POLICY IF EXISTS rg_bench_all ON invoices;
DROP POLICY IF EXISTS rg_bench ON customers;
DROP POLICY IF EXISTS rg_bench_all ON customers;
DROP POLICY IF EXISTS rg_bench ON transactions;
DROP POLICY IF EXISTS rg_bench_all ON transactions;
DROP POLICY IF EXISTS rg_bench ON orders;
DROP POLICY IF EXISTS rg_bench_all ON orders;
DROP POLICY IF EXISTS rg_bench ON order_items;
DROP POLICY IF EXISTS rg_bench_all ON order_items;
DROP POLICY IF EXISTS rg_bench ON folders;
DROP POLICY IF EXISTS rg_bench_all ON folders;
DROP POLICY IF EXISTS rg_bench ON documents;
DROP POLICY IF EXISTS rg_bench_all ON documents;
DROP POLICY IF EXISTS rg_bench ON blocks;
DROP POLICY IF EXISTS rg_bench_all ON blocks;
DROP POLICY IF EXISTS rg_bench ON items;
DROP POLICY IF EXISTS rg_bench_all ON items;

CREATE POLICY rg_bench_all ON invoices FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON invoices AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    department IN (SELECT department FROM permissions WHERE allowed_role IN (
        SELECT role FROM user_roles WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON customers FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON customers AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    department IN (SELECT department FROM permissions WHERE allowed_role IN (
        SELECT role FROM user_roles WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON transactions FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON transactions AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    department IN (SELECT department FROM permissions WHERE allowed_role IN (
        SELECT role FROM user_roles WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON orders FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON orders AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    user_id = current_setting('app.user_id'));
CREATE POLICY rg_bench_all ON order_items FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON order_items AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    order_id IN (SELECT id FROM orders WHERE user_id = current_setting('app.user_id')));
CREATE POLICY rg_bench_all ON folders FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON folders AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    id IN (SELECT folder_id FROM folder_access WHERE role IN (
        SELECT role FROM user_roles WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON documents FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON documents AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    folder_id IN (SELECT folder_id FROM folder_access WHERE role IN (
        SELECT role FROM user_roles WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON blocks FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON blocks AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    document_id IN (SELECT d.id FROM documents d JOIN folder_access fa ON fa.folder_id = d.folder_id
                    WHERE fa.role IN (SELECT role FROM user_roles
                                      WHERE user_id = current_setting('app.user_id'))));
CREATE POLICY rg_bench_all ON items FOR SELECT TO rg_bench_scale_rls USING (true);
CREATE POLICY rg_bench ON items AS RESTRICTIVE FOR SELECT TO rg_bench_scale_rls USING (
    tenant_id IN (SELECT tenant_id FROM app_users WHERE id = current_setting('app.user_id'))
    AND id IN (SELECT item_id FROM item_users WHERE user_id = current_setting('app.user_id')));
