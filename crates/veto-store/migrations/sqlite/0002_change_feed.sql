-- The change feed carries what a node needs to apply a change without reading the row back:
-- a revocation's `until` (NULL = permanent) and a cutoff's not_before_iat (the stored maximum).
-- Older rows keep NULL; they predate any node that reads the feed.
ALTER TABLE changes ADD COLUMN value INTEGER;
-- Purge deletes old change rows by `at`, in bounded batches.
CREATE INDEX changes_at ON changes (at);
