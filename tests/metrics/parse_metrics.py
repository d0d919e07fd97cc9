#!/usr/bin/python3
"""Parses a /metrics answer with prometheus_client's strict parsers and prints its samples as JSON.

Usage: parse_metrics.py FILE [--openmetrics]

The Prometheus text format goes through prometheus_client.parser, OpenMetrics through
prometheus_client.openmetrics.parser (which also checks histogram buckets: ascending `le`, a +Inf
bucket, cumulative counts, `_count` equal to the +Inf bucket). A parse error exits 1 with the
parser's message. Output: {"families": {name: type}, "samples": [[name, {labels}, value], ...]}.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def check_histogram(family):
    """What the Prometheus text parser does not check itself: the histogram_quantile contract."""
    series = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        key = json.dumps(labels, sort_keys=True)
        entry = series.setdefault(key, {"buckets": [], "count": None, "sum": None})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
    for key, entry in series.items():
        buckets = entry["buckets"]
        where = f"{family.name}{key}"
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError(f"{where}: no +Inf bucket")
        if [b[0] for b in buckets] != sorted(b[0] for b in buckets):
            raise ValueError(f"{where}: le not ascending")
        if any(later[1] < earlier[1] for earlier, later in zip(buckets, buckets[1:])):
            raise ValueError(f"{where}: bucket counts not cumulative")
        if entry["count"] != buckets[-1][1] or entry["sum"] is None:
            raise ValueError(f"{where}: _count differs from the +Inf bucket, or no _sum")


def main():
    path = sys.argv[1]
    openmetrics = "--openmetrics" in sys.argv[2:]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        families = list((parse_openmetrics if openmetrics else parse_prometheus)(text))
        for family in families:
            if family.type == "histogram":
                check_histogram(family)
    except Exception as error:  # the parsers raise ValueError and others
        print(f"strict parse failed: {error}", file=sys.stderr)
        sys.exit(1)
    out = {"families": {f.name: f.type for f in families}, "samples": []}
    for family in families:
        for sample in family.samples:
            out["samples"].append([sample.name, sample.labels, sample.value])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
