#!/bin/bash
# Verification rate on the compare harness's 2M-row `big` table, and its overhead on a follow workload.
set -e
# Dev servers: MariaDB on 127.0.0.1:33061 (root, binlog ROW), PostgreSQL on 127.0.0.1:54321 (postgres, trust).
export SYNCHDB_SOURCE_URL=${SYNCHDB_SOURCE_URL:-mysql://root@127.0.0.1:33061}
R=${R_BENCH:-$(dirname "$0")/../target/release/examples/replicate}
M="mariadb -h127.0.0.1 -P33061 -uroot"
P="psql -h127.0.0.1 -p54321 -Upostgres -qAt"
ROWS=${ROWS:-2000000}
if [ "$($M -Nse "select count(*) from vbench.big" 2>/dev/null)" != "$ROWS" ]; then
  $M -e "SET sql_log_bin=0; DROP DATABASE IF EXISTS vbench; CREATE DATABASE vbench; CREATE TABLE vbench.big (id BIGINT NOT NULL PRIMARY KEY, k INT NOT NULL, name VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL, body TEXT, flag TINYINT NOT NULL, score DOUBLE, attrs JSON, tag VARBINARY(16), KEY idx_k (k)); CREATE TABLE vbench.f (id BIGINT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64) NOT NULL); INSERT INTO vbench.f SELECT seq, seq, CONCAT('v', seq) FROM seq.seq_1_to_100000;"
  for lo in $(seq 1 250000 $ROWS); do hi=$((lo+249999)); [ $hi -gt $ROWS ] && hi=$ROWS
    $M -e "SET sql_log_bin=0; INSERT INTO vbench.big SELECT seq, seq % 100003, CONCAT('name-', seq, '-', LEFT(MD5(seq), 16)), (seq % 10000000) / 100, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000000) MICROSECOND, RPAD(CONCAT('row ', seq, ': '), 200, 'lorem ipsum dolor sit amet, consectetur adipiscing elit '), seq % 128, IF(seq % 50 = 0, NULL, seq / 7e0), JSON_OBJECT('n', seq, 'even', seq % 2 = 0, 'tag', CONCAT('t', seq % 97)), IF(seq % 10 = 0, NULL, UNHEX(MD5(seq))) FROM seq.seq_${lo}_to_${hi}"
  done
  $P -c "DROP DATABASE IF EXISTS vbench" -c "CREATE DATABASE vbench"
  $R --databases vbench --target postgres://postgres@127.0.0.1:54321/vbench --pipeline-id vbench --until-caught-up | tail -1
fi
T=postgres://postgres@127.0.0.1:54321/vbench
echo "== verify alone (3 runs)"
for i in 1 2 3; do
  s=$(date +%s.%N); $R --databases vbench --target $T --pipeline-id vbench --verify --verify-tables vbench.big 2>/dev/null | tail -1; e=$(date +%s.%N)
  echo "rows/s: $(echo "$ROWS / ($e - $s)" | bc)"
done
# Follow workload: 2000 transactions of 50 updates each on vbench.f, replicate following.
workload() { for r in $(seq 1 2000); do echo "BEGIN; UPDATE vbench.f SET k = k + 1 WHERE id BETWEEN $(( (r*50) % 99950 + 1 )) AND $(( (r*50) % 99950 + 50 )); COMMIT;"; done | $M; }
caught_up() { want=$($M -Nse "SHOW MASTER STATUS" | awk '{print $1":"$2}'); while true; do have=$($P $T -c "select split_part(position,' ',1) from synchdb.pipelines where pipeline_id='vbench'"); [ "$have" == "$want" ] && break; sleep 0.05; done; }
$R --databases vbench --target $T --pipeline-id vbench > /dev/null 2>&1 & FOL=$!
sleep 2
for mode in alone with-verify alone with-verify; do
  if [ $mode == with-verify ]; then $R --databases vbench --target $T --pipeline-id vbench --verify --verify-tables vbench.big > /dev/null 2>&1 & VER=$!; sleep 1; fi
  s=$(date +%s.%N); workload; caught_up; e=$(date +%s.%N)
  echo "follow $mode: 100000 row changes written and applied in $(echo "$e - $s" | bc) s"
  if [ $mode == with-verify ]; then wait $VER || true; fi
done
kill $FOL
