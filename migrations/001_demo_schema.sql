-- rowgate demo database: schema.
--
-- Plain PostgreSQL 15 SQL, meant for an EMPTY database, run as a superuser in a simple-query
-- batch, before 002_demo_data.sql. No extensions, no psql meta-commands.
--
-- Four ways data is usually fenced (see DESIGN.md, "Demo database"):
--   1. department roles   invoices, customers, transactions  <- permissions, user_roles
--   2. ownership           orders, order_items                <- orders.user_id
--   3. folder access       folders, documents, blocks         <- folder_access, user_roles
--   4. tenants             items                              <- app_users.tenant_id, item_users
--
-- The tables that grant access (app_users, user_roles, permissions, folder_access, item_users)
-- are not queryable by the agent; see policies/demo.yaml.

------------------------------------------------------------------------------------------------
-- Vector distance: `<=>` over float8[], spelled as pgvector spells cosine distance.
------------------------------------------------------------------------------------------------

-- Cosine distance 1 - (a.b)/(|a||b|). NULL if either vector has zero length or norm; an error
-- if the dimensions differ (as pgvector does). Names are schema-qualified so the functions do
-- not depend on the caller's search_path.
CREATE FUNCTION public.cosine_distance(a float8[], b float8[]) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    dot float8;
    na  float8;
    nb  float8;
BEGIN
    IF pg_catalog.cardinality(a) <> pg_catalog.cardinality(b) THEN
        RAISE EXCEPTION 'different vector dimensions % and %',
            pg_catalog.cardinality(a), pg_catalog.cardinality(b);
    END IF;
    SELECT pg_catalog.sum(x * y), pg_catalog.sum(x * x), pg_catalog.sum(y * y)
      INTO dot, na, nb
      FROM ROWS FROM (pg_catalog.unnest(a), pg_catalog.unnest(b)) AS t(x, y);
    IF dot IS NULL OR na = 0 OR nb = 0 THEN
        RETURN NULL;
    END IF;
    RETURN 1 - dot / (pg_catalog.sqrt(na) * pg_catalog.sqrt(nb));
END
$$;

COMMENT ON FUNCTION public.cosine_distance(float8[], float8[]) IS
    'Cosine distance between two vectors of equal dimension (pgvector''s <=>).';

-- pgvector's text form of a vector: '[0.1, 0.2, 0.3]'.
CREATE FUNCTION public.cosine_distance(a float8[], b text) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT public.cosine_distance(a, pg_catalog.translate(b, '[]', '{}')::float8[])
$$;

COMMENT ON FUNCTION public.cosine_distance(float8[], text) IS
    'Cosine distance to a vector written in pgvector''s text form, e.g. ''[0.1, 0.2, 0.3]''.';

-- Any array on the right: ARRAY[...]::float8[], ARRAY[0.1, 0.2] (numeric[]), int[] ...
CREATE FUNCTION public.cosine_distance(a float8[], b anyarray) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT public.cosine_distance(a, b::float8[])
$$;

COMMENT ON FUNCTION public.cosine_distance(float8[], anyarray) IS
    'Cosine distance to any numeric array (cast to float8[]).';

-- Why no operator (float8[], float8[]): for `embedding <=> '[0.1, ...]'` PostgreSQL first tries
-- the untyped literal as the left operand's type; an exact (float8[], float8[]) operator would
-- win, and '[0.1, ...]' is not valid float8[] input ("malformed array literal"). With the two
-- operators below, an untyped literal resolves to the text variant (string category is
-- preferred for unknown literals), and any typed array, float8[] included, to the anyarray one.
CREATE OPERATOR public.<=> (
    LEFTARG  = float8[],
    RIGHTARG = text,
    FUNCTION = public.cosine_distance
);

CREATE OPERATOR public.<=> (
    LEFTARG  = float8[],
    RIGHTARG = anyarray,
    FUNCTION = public.cosine_distance
);

COMMENT ON OPERATOR public.<=> (float8[], text) IS 'cosine distance (pgvector spelling)';
COMMENT ON OPERATOR public.<=> (float8[], anyarray) IS 'cosine distance (pgvector spelling)';

------------------------------------------------------------------------------------------------
-- Callers
------------------------------------------------------------------------------------------------

CREATE TABLE app_users (
    id           text PRIMARY KEY,
    tenant_id    int  NOT NULL,
    display_name text NOT NULL
);

CREATE INDEX app_users_tenant_id_idx ON app_users (tenant_id);

COMMENT ON TABLE app_users IS 'Application users (the callers rowgate acts for), one tenant each.';
COMMENT ON COLUMN app_users.id IS 'Login id of the user, as passed by the calling application.';
COMMENT ON COLUMN app_users.tenant_id IS 'Tenant (customer organisation) the user belongs to.';

------------------------------------------------------------------------------------------------
-- 1. Department roles
------------------------------------------------------------------------------------------------

CREATE TABLE user_roles (
    user_id text NOT NULL REFERENCES app_users (id),
    role    text NOT NULL,
    PRIMARY KEY (user_id, role)          -- also serves lookups by user_id
);

COMMENT ON TABLE user_roles IS 'Roles held by each user; a user may hold several.';

CREATE TABLE permissions (
    department   text NOT NULL,
    allowed_role text NOT NULL,
    PRIMARY KEY (department, allowed_role)
);

CREATE INDEX permissions_allowed_role_idx ON permissions (allowed_role, department);

COMMENT ON TABLE permissions IS 'Which role may read the data of which department.';
COMMENT ON COLUMN permissions.allowed_role IS 'A role (see user_roles.role) allowed to read the department.';

CREATE TABLE customers (
    id         int         PRIMARY KEY,
    name       text        NOT NULL,
    email      text        NOT NULL,
    department text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL
);

CREATE INDEX customers_department_idx ON customers (department);

COMMENT ON TABLE customers IS 'Customers, each looked after by one department.';
COMMENT ON COLUMN customers.email IS 'Contact e-mail address (personal data).';
COMMENT ON COLUMN customers.active IS 'False once the customer relationship has ended.';

CREATE TABLE invoices (
    id          int           PRIMARY KEY,
    amount      numeric(12,2) NOT NULL,
    issued_on   date          NOT NULL,
    department  text          NOT NULL,
    customer_id int           NOT NULL REFERENCES customers (id)
);

CREATE INDEX invoices_department_idx ON invoices (department);
CREATE INDEX invoices_customer_id_idx ON invoices (customer_id);
CREATE INDEX invoices_issued_on_idx ON invoices (issued_on);

COMMENT ON TABLE invoices IS 'Invoices issued by each department to its customers.';
COMMENT ON COLUMN invoices.amount IS 'Invoice total in EUR, tax included.';
COMMENT ON COLUMN invoices.department IS 'Department that issued the invoice; decides who may see it.';

CREATE TABLE transactions (
    id          bigint        PRIMARY KEY,
    invoice_id  int           NOT NULL REFERENCES invoices (id),
    amount      numeric(12,2) NOT NULL,
    department  text          NOT NULL,
    happened_at timestamptz   NOT NULL
);

CREATE INDEX transactions_department_idx ON transactions (department);
CREATE INDEX transactions_invoice_id_idx ON transactions (invoice_id);

COMMENT ON TABLE transactions IS 'Payments received against invoices.';
COMMENT ON COLUMN transactions.amount IS 'Amount paid in EUR; an invoice may be paid in several parts.';

------------------------------------------------------------------------------------------------
-- 2. Ownership
------------------------------------------------------------------------------------------------

CREATE TABLE orders (
    id        int           PRIMARY KEY,
    user_id   text          NOT NULL REFERENCES app_users (id),
    total     numeric(12,2) NOT NULL DEFAULT 0,
    placed_at timestamptz   NOT NULL,
    status    text          NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    metadata  jsonb         NOT NULL DEFAULT '{}'
);

CREATE INDEX orders_user_id_idx ON orders (user_id);

COMMENT ON TABLE orders IS 'Orders placed by application users in the shop.';
COMMENT ON COLUMN orders.total IS 'Sum of quantity * unit_price over the order''s items.';
COMMENT ON COLUMN orders.metadata IS 'Free-form order details: channel, gift flag, coupon code.';

CREATE TABLE order_items (
    id         int           PRIMARY KEY,
    order_id   int           NOT NULL REFERENCES orders (id),
    product    text          NOT NULL,
    quantity   int           NOT NULL CHECK (quantity > 0),
    unit_price numeric(10,2) NOT NULL
);

CREATE INDEX order_items_order_id_idx ON order_items (order_id);

COMMENT ON TABLE order_items IS 'Lines of an order: product, quantity and unit price.';

------------------------------------------------------------------------------------------------
-- 3. Folder access (retrieval over document blocks)
------------------------------------------------------------------------------------------------

CREATE TABLE folders (
    id   int  PRIMARY KEY,
    name text NOT NULL UNIQUE
);

COMMENT ON TABLE folders IS 'Folders of the document store.';

CREATE TABLE folder_access (
    folder_id int  NOT NULL REFERENCES folders (id),
    role      text NOT NULL,
    PRIMARY KEY (folder_id, role)
);

CREATE INDEX folder_access_role_idx ON folder_access (role, folder_id);

COMMENT ON TABLE folder_access IS 'Which role may read the documents of which folder.';

CREATE TABLE documents (
    id         int         PRIMARY KEY,
    uid        uuid        NOT NULL UNIQUE,
    folder_id  int         NOT NULL REFERENCES folders (id),
    title      text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX documents_folder_id_idx ON documents (folder_id);

COMMENT ON TABLE documents IS 'Documents, each filed in one folder.';
COMMENT ON COLUMN documents.uid IS 'Stable public identifier of the document.';

CREATE TABLE blocks (
    id          int      PRIMARY KEY,
    document_id int      NOT NULL REFERENCES documents (id),
    content     text     NOT NULL,
    embedding   float8[] NOT NULL
);

CREATE INDEX blocks_document_id_idx ON blocks (document_id);

COMMENT ON TABLE blocks IS 'Text chunks of documents with their embeddings, for retrieval.';
COMMENT ON COLUMN blocks.embedding IS '4-dimension embedding; rank with ORDER BY embedding <=> ''[...]''.';

------------------------------------------------------------------------------------------------
-- 4. Tenants
------------------------------------------------------------------------------------------------

CREATE TABLE items (
    id         int         PRIMARY KEY,
    tenant_id  int         NOT NULL,
    name       text        NOT NULL,
    tags       text[]      NOT NULL DEFAULT '{}',
    archived   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE INDEX items_tenant_id_idx ON items (tenant_id);

COMMENT ON TABLE items IS 'Work items of each tenant, shared with some of the tenant''s users.';
COMMENT ON COLUMN items.tags IS 'Free-form labels.';

CREATE TABLE item_users (
    item_id int  NOT NULL REFERENCES items (id),
    user_id text NOT NULL REFERENCES app_users (id),
    PRIMARY KEY (item_id, user_id)
);

CREATE INDEX item_users_user_id_idx ON item_users (user_id, item_id);

COMMENT ON TABLE item_users IS 'Which user an item is shared with.';
