-- rowgate demo database: data. Runs after 001_demo_schema.sql.
--
-- Deterministic: no random(), no now(); variety comes from arithmetic on generate_series.
-- Timestamps carry an explicit UTC offset, so the data does not depend on the session TimeZone.
--
-- Who sees what (rules in policies/demo.yaml):
--   bob    HR Manager                     departments HR, Operations
--   anne   Sales Manager + HR Manager     departments HR, Sales, Operations (Operations is
--                                        granted to both of her roles: a naive join doubles it)
--   carol  no role                        no department, no folder; her own orders; her items
--   dave   Finance Manager                Finance
--   erin   Sales Manager                  Sales, Operations
--   frank  Engineer                       no department; Engineering Wiki, Company Handbook
--   grace  Finance Manager + Auditor      Finance (granted to both of her roles)
--   heidi  Support Agent                  no department; Engineering Wiki, Company Handbook
-- Legal and Executive are granted to nobody (Legal only to 'General Counsel', a role nobody
-- holds). Invoice 2001 (Executive, 777.77) is the planted hidden row: no other invoice or
-- transaction has the amount 777.77 except its own payment, transaction 3001 (also Executive).

------------------------------------------------------------------------------------------------
-- Callers and roles
------------------------------------------------------------------------------------------------

INSERT INTO app_users (id, tenant_id, display_name) VALUES
    ('bob',   1, 'Bob Baker'),
    ('anne',  1, 'Anne Andersen'),
    ('carol', 1, 'Carol Chen'),
    ('dave',  1, 'Dave Diaz'),
    ('erin',  2, 'Erin Evans'),
    ('frank', 2, 'Frank Fischer'),
    ('grace', 3, 'Grace Gomez'),
    ('heidi', 3, 'Heidi Hart');

INSERT INTO user_roles (user_id, role) VALUES
    ('bob',   'HR Manager'),
    ('anne',  'Sales Manager'),
    ('anne',  'HR Manager'),
    ('dave',  'Finance Manager'),
    ('erin',  'Sales Manager'),
    ('frank', 'Engineer'),
    ('grace', 'Finance Manager'),
    ('grace', 'Auditor'),
    ('heidi', 'Support Agent');

INSERT INTO permissions (department, allowed_role) VALUES
    ('HR',         'HR Manager'),
    ('Operations', 'HR Manager'),
    ('Sales',      'Sales Manager'),
    ('Operations', 'Sales Manager'),
    ('Finance',    'Finance Manager'),
    ('Finance',    'Auditor'),
    ('Legal',      'General Counsel');
    -- 'Executive': no grant at all.

------------------------------------------------------------------------------------------------
-- 1. Department roles: customers, invoices, transactions
------------------------------------------------------------------------------------------------

-- 200 customers with unique names (20 prefixes x 10 suffixes); department = 1 + id % 6 of
-- HR, Sales, Operations, Finance, Legal, Executive.
INSERT INTO customers (id, name, email, department, active, created_at)
SELECT g,
       n.name,
       lower(replace(n.name, ' ', '.')) || '@example.com',
       (ARRAY['HR', 'Sales', 'Operations', 'Finance', 'Legal', 'Executive'])[1 + g % 6],
       g % 7 <> 0,
       timestamptz '2021-01-04 09:00:00+00' + ((g * 7919) % 1000) * interval '1 day'
                                            + ((g * 31) % 480) * interval '1 minute'
FROM generate_series(1, 200) AS g
CROSS JOIN LATERAL (
    SELECT (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Wonka', 'Tyrell',
                  'Cyberdyne', 'Soylent', 'Hooli', 'Vandelay', 'Dunder', 'Oscorp', 'Gringotts',
                  'Monarch', 'Aperture', 'Massive', 'Pied Piper', 'Nakatomi'])[1 + (g - 1) % 20]
           || ' ' ||
           (ARRAY['Ltd', 'GmbH', 'Inc', 'SA', 'BV', 'AG', 'Oy', 'AB', 'SRL', 'LLC'])[1 + ((g - 1) / 20) % 10]
           AS name
) AS n;

-- 2000 invoices; the department is the customer's department.
INSERT INTO invoices (id, amount, issued_on, department, customer_id)
SELECT g,
       10 + ((g * 7919) % 99991) / 100.0,
       date '2023-01-02' + (g * 13) % 730,
       c.department,
       c.id
FROM generate_series(1, 2000) AS g
JOIN customers AS c ON c.id = 1 + (g * 37) % 200;

-- The planted hidden invoice: Executive is granted to nobody.
INSERT INTO invoices (id, amount, issued_on, department, customer_id)
SELECT 2001, 777.77, date '2024-06-28', c.department, c.id
FROM customers AS c
WHERE c.id = 5;   -- 1 + 5 % 6 = 6: Executive

-- 3000 payments: full, half, quarter or three quarters of an invoice.
INSERT INTO transactions (id, invoice_id, amount, department, happened_at)
SELECT g,
       i.id,
       round(i.amount * (ARRAY[1.0, 0.5, 0.25, 0.75])[1 + g % 4], 2),
       i.department,
       (i.issued_on + (g % 60))::timestamp AT TIME ZONE 'UTC'
           + ((g * 37) % 1440) * interval '1 minute'
FROM generate_series(1, 3000) AS g
JOIN invoices AS i ON i.id = 1 + (g * 7) % 2000;

INSERT INTO transactions (id, invoice_id, amount, department, happened_at)
VALUES (3001, 2001, 777.77, 'Executive', timestamptz '2024-07-15 10:30:00+00');

------------------------------------------------------------------------------------------------
-- 2. Ownership: orders and their items
------------------------------------------------------------------------------------------------

-- 300 orders spread over the eight users (about 37 each).
INSERT INTO orders (id, user_id, total, placed_at, status, metadata)
SELECT g,
       (ARRAY['bob', 'anne', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'])[1 + (g * 5) % 8],
       0,
       timestamptz '2024-01-01 00:00:00+00' + ((g * 7919) % 525600) * interval '1 minute',
       (ARRAY['delivered', 'shipped', 'paid', 'delivered', 'pending', 'delivered', 'cancelled'])[1 + g % 7],
       jsonb_build_object(
           'channel', (ARRAY['web', 'mobile', 'store'])[1 + g % 3],
           'gift',    g % 5 = 0,
           'coupon',  CASE WHEN g % 4 = 0 THEN 'SPRING10' END,
           'items',   3)
FROM generate_series(1, 300) AS g;

-- 900 lines, three per order.
INSERT INTO order_items (id, order_id, product, quantity, unit_price)
SELECT g,
       1 + (g * 7) % 300,
       p.product,
       1 + (g * 3) % 4,
       p.price
FROM generate_series(1, 900) AS g
JOIN (VALUES ( 0, 'Espresso beans 1kg',   24.90),
             ( 1, 'Ceramic mug',           9.50),
             ( 2, 'Pour-over kettle',     49.00),
             ( 3, 'Paper filters (100)',   4.20),
             ( 4, 'Burr grinder',        129.00),
             ( 5, 'Milk frother',         35.75),
             ( 6, 'Travel tumbler',       19.99),
             ( 7, 'Descaling tablets',     7.80),
             ( 8, 'Green tea 250g',       12.40),
             ( 9, 'Cold brew jar',        27.30),
             (10, 'Digital scale',        22.00),
             (11, 'Gift card',            50.00)) AS p(k, product, price)
  ON p.k = (g * 5) % 12;

UPDATE orders AS o
SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total
      FROM order_items GROUP BY order_id) AS s
WHERE s.order_id = o.id;

------------------------------------------------------------------------------------------------
-- 3. Folder access: folders, documents, blocks
------------------------------------------------------------------------------------------------

INSERT INTO folders (id, name) VALUES
    (1, 'Company Handbook'),
    (2, 'HR Policies'),
    (3, 'Sales Playbooks'),
    (4, 'Finance Reports'),
    (5, 'Engineering Wiki'),
    (6, 'Board Minutes');          -- granted to nobody

INSERT INTO folder_access (folder_id, role) VALUES
    (1, 'HR Manager'),             -- anne reaches the handbook through two roles
    (1, 'Sales Manager'),
    (1, 'Finance Manager'),
    (1, 'Auditor'),
    (1, 'Engineer'),
    (1, 'Support Agent'),
    (2, 'HR Manager'),
    (3, 'Sales Manager'),
    (4, 'Finance Manager'),
    (4, 'Auditor'),
    (5, 'Engineer'),
    (5, 'Support Agent');

-- 40 documents with unique titles, folder = 1 + (id * 7) % 6.
INSERT INTO documents (id, uid, folder_id, title, created_at)
SELECT g,
       md5('rowgate-demo-document-' || g)::uuid,
       1 + (g * 7) % 6,
       (ARRAY['Onboarding', 'Travel', 'Expenses', 'Security', 'Pricing', 'Quarterly results',
              'Hiring', 'Remote work', 'Incident response', 'Roadmap'])[1 + (g - 1) % 10]
       || ' ' ||
       (ARRAY['guide', 'policy', 'report', 'checklist'])[1 + ((g - 1) / 10) % 4],
       timestamptz '2023-03-01 08:00:00+00' + ((g * 7919) % 600) * interval '1 day'
FROM generate_series(1, 40) AS g;

-- 400 blocks, ten per document, with 4-dimension embeddings from sin/cos of the id.
INSERT INTO blocks (id, document_id, content, embedding)
SELECT g,
       d.id,
       'Section ' || (1 + (g - 1) / 40) || ' of "' || d.title || '": '
       || (ARRAY['Read this before your first week.',
                 'Approval is needed above the team budget.',
                 'Report problems to the on-call engineer within one hour.',
                 'Prices are reviewed every quarter.',
                 'Keep receipts for seven years.',
                 'Use the company VPN on public networks.',
                 'Interviews follow the structured scorecard.',
                 'Targets are set per region and per quarter.'])[1 + (g * 3) % 8],
       ARRAY[round(sin(g)::numeric, 6),
             round(cos(g)::numeric, 6),
             round(sin(g * 0.37 + 1)::numeric, 6),
             round(cos(g * 1.3)::numeric, 6)]::float8[]
FROM generate_series(1, 400) AS g
JOIN documents AS d ON d.id = 1 + (g - 1) % 40;

------------------------------------------------------------------------------------------------
-- 4. Tenants: items and their sharing
------------------------------------------------------------------------------------------------

-- 60 items, 20 per tenant: tenant_id = 1 + id % 3.
INSERT INTO items (id, tenant_id, name, tags, archived, created_at)
SELECT g,
       1 + g % 3,
       (ARRAY['Quarterly plan', 'Vendor contract', 'Launch checklist', 'Budget sheet',
              'Support macro', 'Design review'])[1 + g % 6] || ' #' || g,
       CASE g % 4
           WHEN 0 THEN ARRAY['urgent', 'finance']
           WHEN 1 THEN ARRAY['draft']
           WHEN 2 THEN ARRAY['shared', 'q3', 'review']
           ELSE '{}'::text[]
       END,
       g % 9 = 0,
       timestamptz '2024-02-01 12:00:00+00' + ((g * 7919) % 300) * interval '1 day'
FROM generate_series(1, 60) AS g;

-- Each item is shared with about half of its tenant's users.
INSERT INTO item_users (item_id, user_id)
SELECT i.id, u.user_id
FROM items AS i
JOIN app_users AS a ON a.tenant_id = i.tenant_id
JOIN (VALUES ('bob', 1), ('anne', 2), ('carol', 3), ('dave', 4),
             ('erin', 5), ('frank', 6), ('grace', 7), ('heidi', 8)) AS u(user_id, k)
  ON u.user_id = a.id
WHERE (i.id * 3 + u.k * 5) % 4 < 2;

-- A stale cross-tenant share: item 1 belongs to tenant 2, bob to tenant 1. The tenant part of
-- the items rule keeps it hidden from bob.
INSERT INTO item_users (item_id, user_id) VALUES (1, 'bob');
