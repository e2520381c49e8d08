-- One row, rewritten by the readiness check while writes are failing (a full disk): a real
-- write, so that /readyz reports ready again only once the store can write again.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
