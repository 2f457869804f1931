# leak: a report keeps every database row as a dict (sqlite3, rows as small dicts of str/int)
# guard: --memory 250M
# expect: dict ×
# expect: local 'rows' in export
import sqlite3


def connect():
    db = sqlite3.connect(":memory:")
    db.execute("create table customer (id integer primary key, name text, email text, balance real)")
    db.executemany(
        "insert into customer values (?, ?, ?, ?)",
        ((i, "customer %d" % i, "c%d@example.com" % i, i * 1.5) for i in range(50_000)),
    )
    db.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row)}
    return db


def export(db):
    rows = []
    while True:  # the same query again and again: every pass adds 50,000 rows
        for row in db.execute("select id, name, email, balance from customer"):
            rows.append(row)


export(connect())
