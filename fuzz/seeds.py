#!/usr/bin/env python3
"""Writes the fuzz seed corpora and the corpora's policy, from files already in the repository.

    python3 fuzz/seeds.py            # from the repository root (or anywhere)

* fuzz/corpus/raw/         one file per query: the BIRD mini-dev gold SQL and the nine models'
                           predictions, defog's reference queries (../shared/corpus), every
                           string literal of the project's query suites (tests/core_*.rs,
                           tests/db_attacks.rs), the agent SQL of every reviewed snapshot, and
                           every regression case in tests/fuzz_cases/.
* fuzz/corpus/structured/  a few deterministic byte strings: that target's input is a recipe
                           for its SQL generator, not SQL, so SQL seeds mean nothing to it.
* fuzz/policies/corpora.yaml  a policy that grants every table of the shared corpora
                           (rows: "true"), so their queries reach resolve and rewrite instead of
                           stopping at table_not_allowed under the demo policy. Committed.

The corpora are not committed (fuzz/corpus is git-ignored); rerun this script to rebuild them.
Nothing here needs the network.
"""

import hashlib
import json
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "corpus")
FUZZ = os.path.join(ROOT, "fuzz")

TEST_SOURCES = [
    "tests/core_snapshots.rs",
    "tests/core_refusals.rs",
    "tests/core_regressions.rs",
    "tests/core_properties.rs",
    "tests/db_attacks.rs",
]

# A string literal of a test is kept as a seed when it looks like SQL.
SQL_HINT = re.compile(
    r"\b(select|with|values|table|insert|update|delete|explain|set|copy|call|do|prepare)\b",
    re.IGNORECASE,
)


def rust_string_literals(text):
    """Yields the value of every "..." and r#"..."# literal in Rust source."""
    pattern = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.DOTALL)
    for m in pattern.finditer(text):
        if m.group(2) is not None and m.group(0).startswith("r"):
            yield m.group(2)
        elif m.group(3) is not None:
            yield unescape_rust(m.group(3))


def unescape_rust(s):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = s[i + 1] if i + 1 < len(s) else ""
        if n == "u" and s[i + 2 : i + 3] == "{":
            end = s.index("}", i)
            out.append(chr(int(s[i + 3 : end].replace("_", ""), 16)))
            i = end + 1
        elif n == "x":
            out.append(chr(int(s[i + 2 : i + 4], 16)))
            i += 4
        elif n == "\n":  # line continuation: skip the newline and the next line's indentation
            i += 2
            while i < len(s) and s[i] in " \t":
                i += 1
        else:
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(n, n))
            i += 2
    return "".join(out)


def queries():
    bird = os.path.join(SHARED, "bird-minidev")
    with open(os.path.join(bird, "mini_dev_postgresql_gold.sql"), encoding="utf-8") as f:
        for line in f:
            sql = line.rstrip("\n").rsplit("\t", 1)[0]
            if sql.strip():
                yield sql
    predictions = os.path.join(bird, "llm_predictions")
    for name in sorted(os.listdir(predictions)):
        with open(os.path.join(predictions, name), encoding="utf-8") as f:
            for value in json.load(f).values():
                yield value.split("\t----- bird -----\t")[0]
    with open(os.path.join(SHARED, "defog", "defog_postgres_queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["sql"]
    for path in TEST_SOURCES:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for literal in rust_string_literals(f.read()):
                if SQL_HINT.search(literal):
                    yield literal
    snapshots = os.path.join(ROOT, "snapshots")
    for name in sorted(os.listdir(snapshots)):
        with open(os.path.join(snapshots, name), encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"\nagent:\n(.*?)\n\nrewritten:", text, re.DOTALL)
        if m:
            yield m.group(1)
    cases = os.path.join(ROOT, "tests", "fuzz_cases")
    if os.path.isdir(cases):
        for name in sorted(os.listdir(cases)):
            with open(os.path.join(cases, name), "rb") as f:
                yield f.read()


def write_corpus(directory, items):
    os.makedirs(directory, exist_ok=True)
    written = 0
    for item in items:
        data = item if isinstance(item, bytes) else item.encode("utf-8")
        name = hashlib.sha1(data).hexdigest()
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            written += 1
    return written


def corpora_tables():
    """Table names created by the corpora's DDL, folded as PostgreSQL folds unquoted names."""
    create = re.compile(r'CREATE TABLE\s+(?:IF NOT EXISTS\s+)?(?:"?public"?\.)?("?)(\w+)\1', re.IGNORECASE)
    files = []
    ddl = os.path.join(SHARED, "bird-minidev", "postgres_ddl")
    files += [os.path.join(ddl, n) for n in sorted(os.listdir(ddl)) if n.endswith(".sql")]
    dbs = os.path.join(SHARED, "defog", "databases")
    files += [os.path.join(dbs, n) for n in sorted(os.listdir(dbs)) if n.endswith(".sql")]
    names = set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            for m in create.finditer(f.read()):
                names.add(m.group(2) if m.group(1) else m.group(2).lower())
    return sorted(names)


def write_policy(path, tables):
    lines = [
        "# Generated by fuzz/seeds.py: every table of ../shared/corpus, readable in full, so that",
        "# the corpora's queries reach resolve and rewrite when fuzzing. Not a policy to deploy.",
        "tables:",
    ]
    for name in tables:
        lines.append(f"  {name}:")
        lines.append('    rows: "true"')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    raw = write_corpus(os.path.join(FUZZ, "corpus", "raw"), queries())
    rng = random.Random(6)
    recipes = [bytes(rng.randrange(256) for _ in range(rng.choice([16, 64, 256, 1024]))) for _ in range(64)]
    structured = write_corpus(os.path.join(FUZZ, "corpus", "structured"), recipes)
    tables = corpora_tables()
    write_policy(os.path.join(FUZZ, "policies", "corpora.yaml"), tables)
    print(f"raw: {raw} new seeds; structured: {structured} new seeds; corpora policy: {len(tables)} tables")


if __name__ == "__main__":
    sys.exit(main())
