-- The second schema of the error-oracle fuzzer (tests/oracle_fuzz.rs): columns of every type
-- whose comparisons PostgreSQL deems leakproof (text, int, date, timestamp, float), and some
-- whose are not (numeric, jsonb), with a rule that reads a grant table (so the planner puts
-- it after any cheap filter it deems leakproof). The canary row is planted by the test.

CREATE TABLE team_grants (user_id text NOT NULL, team text NOT NULL);
INSERT INTO team_grants VALUES ('alice', 'red'), ('bob', 'blue');

CREATE TABLE staff (
    id     int PRIMARY KEY,
    name   text NOT NULL,
    team   text NOT NULL,
    born   date,
    seen   timestamp,
    score  float8,
    level  int,
    pay    numeric(12, 2),
    meta   jsonb,
    active boolean
);
CREATE INDEX staff_team_idx ON staff (team);
CREATE INDEX staff_born_idx ON staff (born);

INSERT INTO staff
SELECT g, 'person ' || g, CASE WHEN g % 2 = 0 THEN 'red' ELSE 'blue' END,
       date '1970-01-01' + g * 97, timestamp '2024-01-01' + g * interval '5 hours',
       g / 7.0, g % 10, g * 10.5, jsonb_build_object('a', g, 'b', 'text ' || g), g % 3 = 0
FROM generate_series(1, 200) AS g;

CREATE TABLE projects (
    id       int PRIMARY KEY,
    staff_id int NOT NULL,
    title    text NOT NULL,
    due      date
);
INSERT INTO projects
SELECT g, 1 + g % 200, 'project ' || g, date '2025-01-01' + g FROM generate_series(1, 400) AS g;

ANALYZE;
