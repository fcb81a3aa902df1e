SELECT amount --
FROM invoices -- FROM permissions