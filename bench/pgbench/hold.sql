-- The row work of one raw hold (bench/raw_app.py's POST /raw/hold), as a pgbench script: lock the member's
-- balance row (found by public id, as the app finds it), move 10 points to held, record the hold.
-- pgbench -n -M prepared -f bench/pgbench/hold.sql -D members=N -c C -j 2 -T S loyalty_bench
\set m random(1, :members)
BEGIN;
SELECT b.member_id, b.available FROM bench_raw_balances b JOIN members m ON m.id = b.member_id
  WHERE m.public_id = 'mem_bench' || :m FOR UPDATE OF b;
UPDATE bench_raw_balances SET available = available - 10, held = held + 10
  WHERE member_id = :m AND available >= 10;
INSERT INTO bench_raw_holds (member_id, points, created_at) VALUES (:m, 10, now());
END;
