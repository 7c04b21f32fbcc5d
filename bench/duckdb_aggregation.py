"""The DuckDB side of the aggregation peer comparison (bench/run.sh aggregation).

Loads the CSV written by the Rust side into an in-memory table (not timed), then times the
GROUP BY that Caracal's ring performs: one row per (bucket, flow key) with summed counters.
Labels are taken with min() rather than intersected, which favours DuckDB.
"""
import json
import sys
import time

import duckdb

KEY = ("bucket, source_type, source_namespace, source_name, dest_type, dest_namespace, dest_name, "
       "dest_port, dest_service_name, dest_service_namespace, dest_service_port_name, dest_service_port, "
       "proto, reporter, action, policies")
QUERY = f"""
CREATE OR REPLACE TABLE aggregated AS
SELECT {KEY}, min(source_labels) AS source_labels, min(dest_labels) AS dest_labels,
       sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out, sum(packets_in) AS packets_in,
       sum(packets_out) AS packets_out, sum(connections_started) AS connections_started,
       sum(connections_completed) AS connections_completed, sum(connections_live) AS connections_live
FROM updates GROUP BY {KEY}
"""


def main(path: str) -> None:
    connection = duckdb.connect()
    connection.execute(f"CREATE TABLE updates AS SELECT * FROM read_csv_auto('{path}', header=true)")
    rows = connection.execute("SELECT count(*) FROM updates").fetchone()[0]
    for threads in (1, 2):
        connection.execute(f"SET threads = {threads}")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            connection.execute(QUERY)
            timings.append(time.perf_counter() - started)
        groups = connection.execute("SELECT count(*) FROM aggregated").fetchone()[0]
        best = sorted(timings)[1]
        print(json.dumps({"engine": f"duckdb {duckdb.__version__}, {threads} thread(s)", "rows": rows, "groups": groups,
                          "seconds": round(best, 3), "rows_per_second": round(rows / best)}))


if __name__ == "__main__":
    main(sys.argv[1])
