-- rowgate scale benchmark: data for the demo schema (migrations/001_demo_schema.sql) at scale
-- factor {{SCALE}}: 100,000 x scale invoices. Run after 001 on an empty database, as a superuser.
--
-- Deterministic (arithmetic on generate_series, no random()), so every run plans the same.
-- Skew: department and folder sizes follow a power law (the largest department holds about a
-- quarter of the rows, the smallest under 2%); some users own many orders, most few; users hold
-- one, two or three roles. Blocks carry 32-dimension embeddings for the demo's `<=>`.
--
-- Fixed callers for the benchmark (see benches/scale.rs):
--   anne   roles R08 + R22 (two roles; the largest department D01 and D03: about a third of
--          the invoices), tenant 7
--   bob    role R05 (one role; the small department D22)

SET synchronous_commit = off;

-- 24 departments D01..D24, 30 roles R01..R30.
-- Department d is granted to role 1 + (7d) % 30, and every third department also to a second
-- role, so some roles reach several departments and some none.
INSERT INTO permissions (department, allowed_role)
SELECT DISTINCT 'D' || lpad(d::text, 2, '0'), r
FROM generate_series(1, 24) AS d
CROSS JOIN LATERAL (VALUES ('R' || lpad((1 + (d * 7) % 30)::text, 2, '0')),
                           (CASE WHEN d % 3 = 0 THEN 'R' || lpad((1 + (d * 11 + 3) % 30)::text, 2, '0') END)) AS v(r)
WHERE r IS NOT NULL;

-- 2,000 x scale users in 50 tenants.
INSERT INTO app_users (id, tenant_id, display_name)
SELECT 'u' || g, 1 + (g - 1) % 50, 'User ' || g
FROM generate_series(1, 2000 * {{SCALE}}) AS g;
INSERT INTO app_users (id, tenant_id, display_name) VALUES ('anne', 7, 'Anne'), ('bob', 7, 'Bob');

-- One role each, a second for every third user, a third for every tenth.
INSERT INTO user_roles (user_id, role)
SELECT DISTINCT 'u' || g, 'R' || lpad(r::text, 2, '0')
FROM generate_series(1, 2000 * {{SCALE}}) AS g
CROSS JOIN LATERAL (VALUES (1 + (g * 13) % 30),
                           (CASE WHEN g % 3 = 0 THEN 1 + (g * 17 + 5) % 30 END),
                           (CASE WHEN g % 10 = 0 THEN 1 + (g * 19 + 11) % 30 END)) AS v(r)
WHERE r IS NOT NULL;
INSERT INTO user_roles (user_id, role) VALUES ('anne', 'R08'), ('anne', 'R22'), ('bob', 'R05');

-- Customers: department by a power law over D01..D24 (D01 about 28%, D24 under 2%).
INSERT INTO customers (id, name, email, department, active, created_at)
SELECT g,
       'Customer ' || g,
       'customer' || g || '@example.com',
       'D' || lpad((1 + floor(24 * power(((g::bigint * 7919) % 10007) / 10007.0, 2.5)))::int::text, 2, '0'),
       g % 7 <> 0,
       timestamptz '2021-01-04 09:00:00+00' + ((g::bigint * 7919) % 1000) * interval '1 day'
FROM generate_series(1, 2000 * {{SCALE}}) AS g;

-- Invoices: the department is the customer's.
INSERT INTO invoices (id, amount, issued_on, department, customer_id)
SELECT g,
       10 + ((g::bigint * 7919) % 99991) / 100.0,
       date '2023-01-02' + (g * 13) % 730,
       c.department,
       c.id
FROM generate_series(1, 100000 * {{SCALE}}) AS g
JOIN customers AS c ON c.id = 1 + (g * 37) % (2000 * {{SCALE}});

-- Payments: one and a half per invoice on average.
INSERT INTO transactions (id, invoice_id, amount, department, happened_at)
SELECT g,
       i.id,
       round(i.amount * (ARRAY[1.0, 0.5, 0.25, 0.75])[1 + g % 4], 2),
       i.department,
       (i.issued_on + (g % 60))::timestamp AT TIME ZONE 'UTC' + ((g * 37) % 1440) * interval '1 minute'
FROM generate_series(1, 150000 * {{SCALE}}) AS g
JOIN invoices AS i ON i.id = 1 + (g * 7) % (100000 * {{SCALE}});

-- Orders: 50,000 x scale, owners by a power law (u1 owns thousands, most users a handful);
-- anne owns every 400th order.
INSERT INTO orders (id, user_id, total, placed_at, status, metadata)
SELECT g,
       CASE WHEN g % 400 = 0 THEN 'anne'
            ELSE 'u' || (1 + floor(2000 * {{SCALE}} * power(((g::bigint * 7919) % 10007) / 10007.0, 3)))::int END,
       0,
       timestamptz '2024-01-01 00:00:00+00' + ((g::bigint * 7919) % 525600) * interval '1 minute',
       (ARRAY['delivered', 'shipped', 'paid', 'delivered', 'pending', 'delivered', 'cancelled'])[1 + g % 7],
       jsonb_build_object('channel', (ARRAY['web', 'mobile', 'store'])[1 + g % 3],
                          'gift', g % 5 = 0,
                          'coupon', CASE WHEN g % 4 = 0 THEN 'SPRING10' END)
FROM generate_series(1, 50000 * {{SCALE}}) AS g;

INSERT INTO order_items (id, order_id, product, quantity, unit_price)
SELECT g,
       1 + (g - 1) / 3,
       'Product ' || (g * 5) % 97,
       1 + (g * 3) % 4,
       2 + ((g * 31) % 12000) / 100.0
FROM generate_series(1, 150000 * {{SCALE}}) AS g;

UPDATE orders AS o SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM order_items GROUP BY order_id) AS s
WHERE s.order_id = o.id;

-- Folders: 100 x scale; folders 1-3 are company-wide (every role), the others one or two roles.
INSERT INTO folders (id, name)
SELECT f, 'Folder ' || f FROM generate_series(1, 100 * {{SCALE}}) AS f;

INSERT INTO folder_access (folder_id, role)
SELECT DISTINCT f, 'R' || lpad(r::text, 2, '0')
FROM generate_series(4, 100 * {{SCALE}}) AS f
CROSS JOIN LATERAL (VALUES (1 + (f * 7) % 30),
                           (CASE WHEN f % 4 = 0 THEN 1 + (f * 3 + 1) % 30 END)) AS v(r)
WHERE r IS NOT NULL
UNION
SELECT f, 'R' || lpad(r::text, 2, '0')
FROM generate_series(1, 3) AS f, generate_series(1, 30) AS r;

-- Documents: 10,000 x scale, folder by a power law (the company-wide folders are the largest).
INSERT INTO documents (id, uid, folder_id, title, created_at)
SELECT g,
       md5('rowgate-bench-document-' || g)::uuid,
       1 + floor(100 * {{SCALE}} * power(((g::bigint * 7919) % 10007) / 10007.0, 2))::int,
       'Document ' || g,
       timestamptz '2023-03-01 08:00:00+00' + ((g::bigint * 7919) % 600) * interval '1 day'
FROM generate_series(1, 10000 * {{SCALE}}) AS g;

-- Blocks: 20,000 x scale, two per document, 32-dimension embeddings from sin of the id.
INSERT INTO blocks (id, document_id, content, embedding)
SELECT g,
       1 + (g - 1) % (10000 * {{SCALE}}),
       'Section ' || g || ' of document ' || (1 + (g - 1) % (10000 * {{SCALE}})),
       ARRAY(SELECT round(sin(g * k * 0.37 + k)::numeric, 5)::float8 FROM generate_series(1, 32) AS k)
FROM generate_series(1, 20000 * {{SCALE}}) AS g;

-- Items: 20,000 x scale over the 50 tenants, each shared with three users of its tenant.
INSERT INTO items (id, tenant_id, name, tags, archived, created_at)
SELECT g,
       1 + g % 50,
       'Item ' || g,
       CASE g % 4 WHEN 0 THEN ARRAY['urgent', 'finance'] WHEN 1 THEN ARRAY['draft']
                  WHEN 2 THEN ARRAY['shared', 'q3'] ELSE '{}'::text[] END,
       g % 9 = 0,
       timestamptz '2024-02-01 12:00:00+00' + ((g::bigint * 7919) % 300) * interval '1 day'
FROM generate_series(1, 20000 * {{SCALE}}) AS g;

INSERT INTO item_users (item_id, user_id)
SELECT DISTINCT g, 'u' || ((1 + g % 50) + 50 * k)
FROM generate_series(1, 20000 * {{SCALE}}) AS g
CROSS JOIN LATERAL (VALUES (g % 40), ((g * 7) % 40), ((g * 13) % 40)) AS v(k);
-- anne (tenant 7) is shared every 50th item of her tenant.
INSERT INTO item_users (item_id, user_id)
SELECT g, 'anne' FROM generate_series(1, 20000 * {{SCALE}}) AS g WHERE 1 + g % 50 = 7 AND g % 250 = 6;

-- Indexes a DBA would add for the policies and these questions, beyond the demo schema's
-- (which already has invoices(department), user_roles(user_id, role), permissions(allowed_role,
-- department), orders(user_id), documents(folder_id), blocks(document_id), folder_access(role,
-- folder_id), item_users(user_id, item_id)).
CREATE INDEX orders_user_id_placed_at_idx ON orders (user_id, placed_at);
CREATE INDEX transactions_happened_at_idx ON transactions (happened_at);
CREATE INDEX customers_department_id_idx ON customers (department, id);
