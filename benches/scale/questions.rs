//! The questions of the scale benchmark: what an agent would ask, and the same question written
//! by a human with the policy's filter inlined (the lower bound, run as a superuser).
//!
//! The hand-written filters spell out the rules of `policies/demo.yaml` with the caller's id as
//! a literal, one filter per table reference, the way a careful human would write them.

pub struct Question {
    pub id: &'static str,
    pub what: &'static str,
    /// The SQL the agent sends (rewritten by rowgate; run unchanged under RLS).
    pub agent: String,
    /// The same question with the filter inlined by hand.
    pub hand: String,
}

/// A 32-dimension query vector in pgvector's text form.
pub fn query_vector() -> String {
    let values: Vec<String> = (1..=32)
        .map(|k| format!("{:.4}", (k as f64 * 0.7).sin()))
        .collect();
    format!("[{}]", values.join(", "))
}

/// How the hand-written filters test membership in a subquery.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// `x IN (SELECT ...)`, as a human writes it.
    In,
    /// `x = ANY (ARRAY(SELECT ...))`, as install writes the rules (`row_security::indexable`):
    /// the hand arm then differs from rowgate's only by the fence, not by the rule's form.
    Array,
}

pub fn questions(user: &str, membership: Membership) -> Vec<Question> {
    let u = format!("'{}'", user.replace('\'', "''"));
    let member = |left: &str, subquery: &str| match membership {
        Membership::In => format!("{left} IN ({subquery})"),
        Membership::Array => format!("{left} = ANY (ARRAY({subquery}))"),
    };
    let roles = |left: &str| {
        member(
            left,
            &format!("SELECT role FROM user_roles WHERE user_id = {u}"),
        )
    };
    let dept = |a: &str| {
        member(
            &format!("{a}.department"),
            &format!(
                "SELECT department FROM permissions WHERE {}",
                roles("allowed_role")
            ),
        )
    };
    let own = |a: &str| format!("{a}.user_id = {u}");
    let lines = |a: &str| {
        member(
            &format!("{a}.order_id"),
            &format!("SELECT id FROM orders WHERE user_id = {u}"),
        )
    };
    let readable_folders = format!(
        "SELECT folder_id FROM folder_access WHERE {}",
        roles("role")
    );
    let folders = |a: &str| member(&format!("{a}.id"), &readable_folders);
    let docs = |a: &str| member(&format!("{a}.folder_id"), &readable_folders);
    let blocks = |a: &str| {
        member(
            &format!("{a}.document_id"),
            &format!(
                "SELECT d.id FROM documents d JOIN folder_access fa ON fa.folder_id = d.folder_id WHERE {}",
                roles("fa.role")
            ),
        )
    };
    let items = |a: &str| {
        format!(
            "{} AND {}",
            member(
                &format!("{a}.tenant_id"),
                &format!("SELECT tenant_id FROM app_users WHERE id = {u}")
            ),
            member(
                &format!("{a}.id"),
                &format!("SELECT item_id FROM item_users WHERE user_id = {u}")
            ),
        )
    };
    let v = query_vector();
    let q = |id, what, agent: &str, hand: String| Question {
        id,
        what,
        agent: agent.to_string(),
        hand,
    };
    vec![
        q(
            "Q01",
            "invoice by primary key",
            "SELECT id, amount, department FROM invoices WHERE id = 13000",
            format!(
                "SELECT id, amount, department FROM invoices i WHERE id = 13000 AND {}",
                dept("i")
            ),
        ),
        q(
            "Q02",
            "invoices by amount (numeric =, no index)",
            "SELECT id, issued_on FROM invoices WHERE amount = 512.34",
            format!(
                "SELECT id, issued_on FROM invoices i WHERE amount = 512.34 AND {}",
                dept("i")
            ),
        ),
        q(
            "Q03",
            "date range scan",
            "SELECT id, amount FROM invoices WHERE issued_on BETWEEN '2024-03-01' AND '2024-03-03' ORDER BY id",
            format!(
                "SELECT id, amount FROM invoices i WHERE issued_on BETWEEN '2024-03-01' AND '2024-03-03' AND {} ORDER BY id",
                dept("i")
            ),
        ),
        q(
            "Q04",
            "count in one department",
            "SELECT count(*) FROM invoices WHERE department = 'D03'",
            format!(
                "SELECT count(*) FROM invoices i WHERE department = 'D03' AND {}",
                dept("i")
            ),
        ),
        q(
            "Q05",
            "GROUP BY department",
            "SELECT department, count(*), sum(amount) FROM invoices GROUP BY department ORDER BY department",
            format!(
                "SELECT department, count(*), sum(amount) FROM invoices i WHERE {} GROUP BY department ORDER BY department",
                dept("i")
            ),
        ),
        q(
            "Q06",
            "monthly totals (date_trunc)",
            "SELECT date_trunc('month', issued_on) AS month, count(*), sum(amount) FROM invoices WHERE issued_on >= '2024-07-01' GROUP BY 1 ORDER BY 1",
            format!(
                "SELECT date_trunc('month', issued_on) AS month, count(*), sum(amount) FROM invoices i WHERE issued_on >= '2024-07-01' AND {} GROUP BY 1 ORDER BY 1",
                dept("i")
            ),
        ),
        q(
            "Q07",
            "top customers (2-table join, aggregate)",
            "SELECT c.name, sum(i.amount) AS total FROM invoices i JOIN customers c ON c.id = i.customer_id GROUP BY c.name ORDER BY total DESC LIMIT 10",
            format!(
                "SELECT c.name, sum(i.amount) AS total FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE {} AND {} GROUP BY c.name ORDER BY total DESC LIMIT 10",
                dept("i"),
                dept("c")
            ),
        ),
        q(
            "Q08",
            "one customer's invoices (2-table join)",
            "SELECT i.id, i.amount FROM customers c JOIN invoices i ON i.customer_id = c.id WHERE c.id = 1001 ORDER BY i.issued_on",
            format!(
                "SELECT i.id, i.amount FROM customers c JOIN invoices i ON i.customer_id = c.id WHERE c.id = 1001 AND {} AND {} ORDER BY i.issued_on",
                dept("c"),
                dept("i")
            ),
        ),
        q(
            "Q09",
            "one customer's payments (3-table join)",
            "SELECT c.name, i.id, t.amount, t.happened_at FROM customers c JOIN invoices i ON i.customer_id = c.id JOIN transactions t ON t.invoice_id = i.id WHERE c.id = 1001",
            format!(
                "SELECT c.name, i.id, t.amount, t.happened_at FROM customers c JOIN invoices i ON i.customer_id = c.id JOIN transactions t ON t.invoice_id = i.id WHERE c.id = 1001 AND {} AND {} AND {}",
                dept("c"),
                dept("i"),
                dept("t")
            ),
        ),
        q(
            "Q10",
            "unpaid invoices per department (3 tables, anti-join)",
            "SELECT c.department, count(*) FROM invoices i JOIN customers c ON c.id = i.customer_id LEFT JOIN transactions t ON t.invoice_id = i.id WHERE t.id IS NULL GROUP BY 1 ORDER BY 1",
            format!(
                "SELECT c.department, count(*) FROM invoices i JOIN customers c ON c.id = i.customer_id LEFT JOIN (SELECT * FROM transactions t WHERE {}) t ON t.invoice_id = i.id WHERE t.id IS NULL AND {} AND {} GROUP BY 1 ORDER BY 1",
                dept("t"),
                dept("i"),
                dept("c")
            ),
        ),
        q(
            "Q11",
            "payments of one invoice",
            "SELECT sum(amount) FROM transactions WHERE invoice_id = 13000",
            format!(
                "SELECT sum(amount) FROM transactions t WHERE invoice_id = 13000 AND {}",
                dept("t")
            ),
        ),
        q(
            "Q12",
            "self-join: same customer, same day",
            "SELECT a.id, b.id FROM invoices a JOIN invoices b ON b.customer_id = a.customer_id AND b.issued_on = a.issued_on AND b.id > a.id WHERE a.customer_id = 1001",
            format!(
                "SELECT a.id, b.id FROM invoices a JOIN invoices b ON b.customer_id = a.customer_id AND b.issued_on = a.issued_on AND b.id > a.id WHERE a.customer_id = 1001 AND {} AND {}",
                dept("a"),
                dept("b")
            ),
        ),
        q(
            "Q13",
            "above the customer's average (table referenced twice)",
            "SELECT id, amount FROM invoices WHERE customer_id = 1001 AND amount > (SELECT avg(amount) FROM invoices WHERE customer_id = 1001) ORDER BY amount DESC",
            format!(
                "SELECT id, amount FROM invoices i WHERE customer_id = 1001 AND {} AND amount > (SELECT avg(amount) FROM invoices j WHERE customer_id = 1001 AND {}) ORDER BY amount DESC",
                dept("i"),
                dept("j")
            ),
        ),
        q(
            "Q14",
            "EXISTS: December invoices with a large payment",
            "SELECT count(*) FROM invoices i WHERE i.issued_on >= '2024-12-01' AND EXISTS (SELECT 1 FROM transactions t WHERE t.invoice_id = i.id AND t.amount > 500)",
            format!(
                "SELECT count(*) FROM invoices i WHERE i.issued_on >= '2024-12-01' AND {} AND EXISTS (SELECT 1 FROM transactions t WHERE t.invoice_id = i.id AND t.amount > 500 AND {})",
                dept("i"),
                dept("t")
            ),
        ),
        q(
            "Q15",
            "NOT EXISTS: active customers without a recent invoice",
            "SELECT count(*) FROM customers c WHERE c.active AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.id AND i.issued_on >= '2024-10-01')",
            format!(
                "SELECT count(*) FROM customers c WHERE c.active AND {} AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.id AND i.issued_on >= '2024-10-01' AND {})",
                dept("c"),
                dept("i")
            ),
        ),
        q(
            "Q16",
            "window: top 3 December invoices per customer",
            "SELECT * FROM (SELECT id, customer_id, amount, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) AS r FROM invoices WHERE issued_on >= '2024-12-01') s WHERE r <= 3 ORDER BY customer_id, r",
            format!(
                "SELECT * FROM (SELECT id, customer_id, amount, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) AS r FROM invoices i WHERE issued_on >= '2024-12-01' AND {}) s WHERE r <= 3 ORDER BY customer_id, r",
                dept("i")
            ),
        ),
        q(
            "Q17",
            "my 20 latest orders",
            "SELECT id, total, status FROM orders ORDER BY placed_at DESC LIMIT 20",
            format!(
                "SELECT id, total, status FROM orders o WHERE {} ORDER BY placed_at DESC LIMIT 20",
                own("o")
            ),
        ),
        q(
            "Q18",
            "my orders by status",
            "SELECT status, count(*), sum(total) FROM orders GROUP BY status ORDER BY status",
            format!(
                "SELECT status, count(*), sum(total) FROM orders o WHERE {} GROUP BY status ORDER BY status",
                own("o")
            ),
        ),
        q(
            "Q19",
            "my most valuable orders (join order lines)",
            "SELECT o.id, o.placed_at, sum(oi.quantity * oi.unit_price) AS value FROM orders o JOIN order_items oi ON oi.order_id = o.id GROUP BY o.id, o.placed_at ORDER BY value DESC LIMIT 5",
            format!(
                "SELECT o.id, o.placed_at, sum(oi.quantity * oi.unit_price) AS value FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE {} AND {} GROUP BY o.id, o.placed_at ORDER BY value DESC LIMIT 5",
                own("o"),
                lines("oi")
            ),
        ),
        q(
            "Q20",
            "jsonb filter on my orders",
            "SELECT count(*) FROM orders WHERE metadata->>'channel' = 'web'",
            format!(
                "SELECT count(*) FROM orders o WHERE metadata->>'channel' = 'web' AND {}",
                own("o")
            ),
        ),
        q(
            "Q21",
            "top-5 blocks by <=> over all visible blocks",
            &format!("SELECT id, document_id FROM blocks ORDER BY embedding <=> '{v}' LIMIT 5"),
            format!(
                "SELECT id, document_id FROM blocks b WHERE {} ORDER BY embedding <=> '{v}' LIMIT 5",
                blocks("b")
            ),
        ),
        q(
            "Q22",
            "top-5 blocks by <=> in one folder (join documents)",
            &format!("SELECT b.id, d.title FROM blocks b JOIN documents d ON d.id = b.document_id WHERE d.folder_id = 12 ORDER BY b.embedding <=> '{v}' LIMIT 5"),
            format!(
                "SELECT b.id, d.title FROM blocks b JOIN documents d ON d.id = b.document_id WHERE d.folder_id = 12 AND {} AND {} ORDER BY b.embedding <=> '{v}' LIMIT 5",
                blocks("b"),
                docs("d")
            ),
        ),
        q(
            "Q23",
            "documents per folder (join, GROUP BY)",
            "SELECT f.name, count(*) FROM folders f JOIN documents d ON d.folder_id = f.id GROUP BY f.name ORDER BY 2 DESC, 1 LIMIT 10",
            format!(
                "SELECT f.name, count(*) FROM folders f JOIN documents d ON d.folder_id = f.id WHERE {} AND {} GROUP BY f.name ORDER BY 2 DESC, 1 LIMIT 10",
                folders("f"),
                docs("d")
            ),
        ),
        q(
            "Q24",
            "document by uuid",
            "SELECT id, title FROM documents WHERE uid = '6d1ed508-a8d7-dd5a-9443-e29c22f3be09'",
            format!(
                "SELECT id, title FROM documents d WHERE uid = '6d1ed508-a8d7-dd5a-9443-e29c22f3be09' AND {}",
                docs("d")
            ),
        ),
        q(
            "Q25",
            "my latest open items",
            "SELECT id, name, tags FROM items WHERE NOT archived ORDER BY created_at DESC LIMIT 10",
            format!(
                "SELECT id, name, tags FROM items it WHERE NOT archived AND {} ORDER BY created_at DESC LIMIT 10",
                items("it")
            ),
        ),
    ]
}
