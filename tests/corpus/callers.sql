-- The callers of the corpus tests, loaded into every corpus database after its own rows.
--
-- rg_callers: the hash buckets (0-3) each caller is granted; the policies show a row when its
-- key hashes into one of them. rg_owned: the owner ids (customers, users, patients, students,
-- authors; compared as text) whose rows a caller sees whatever their buckets.
--
--   alice: buckets 0 and 1 (about half of every table), owns ids 1, 2, C001, C002
--   bob:   bucket 2 (about a quarter), owns 3 and C003
--   carol: buckets 1, 2 and 3, owns nothing
--   dave:  no bucket, owns 1, 4 and C004 (sees only what he owns)

CREATE TABLE public.rg_callers (user_id text NOT NULL, bucket integer NOT NULL);
INSERT INTO public.rg_callers VALUES
  ('alice', 0), ('alice', 1), ('bob', 2), ('carol', 1), ('carol', 2), ('carol', 3);

CREATE TABLE public.rg_owned (user_id text NOT NULL, owned text NOT NULL);
INSERT INTO public.rg_owned VALUES
  ('alice', '1'), ('alice', '2'), ('alice', 'C001'), ('alice', 'C002'),
  ('bob', '3'), ('bob', 'C003'),
  ('dave', '1'), ('dave', '4'), ('dave', 'C004');
