"""Compute the delivery-time features from order events and write them to the online store.

    python examples/delivery_time/features.py --sqlite /tmp/delivery_features.db
    python examples/delivery_time/features.py --redis redis://127.0.0.1:6379/0

The order events are generated (seeded): for each restaurant r0..r{N-1}, orders arrive as a
Poisson process over the past two hours, each taking 15-45 minutes to deliver. At time `now`:
    orders_last_hour        orders placed in the last 60 minutes
    outstanding_per_minute  orders placed but not yet delivered, averaged over the 60 minute marks
                            of the last hour (the course's "outstanding orders per minute")
SQLite: table `restaurant_features` (restaurant_id TEXT PRIMARY KEY, one REAL column per feature).
Redis: a hash `restaurant:<id>` per restaurant, one field per feature. This script is the only
writer; the server only reads.
"""
from __future__ import annotations

import argparse
import sqlite3
from dataclasses import dataclass

import numpy as np

TABLE = "restaurant_features"
KEY_PREFIX = "restaurant:"
FEATURES = ("orders_last_hour", "outstanding_per_minute")


@dataclass(frozen=True)
class Order:
    restaurant_id: str
    placed: float  # minutes before `now` (negative: in the past)
    delivered: float


def generate_orders(restaurants: int, seed: int = 0) -> list[Order]:
    """Orders of the last two hours, each restaurant with its own rate (5..40 per hour)."""
    rng = np.random.default_rng(seed)
    orders = []
    for r in range(restaurants):
        rate = rng.uniform(5, 40) / 60  # orders per minute
        count = rng.poisson(rate * 120)
        placed = np.sort(rng.uniform(-120, 0, count))
        for t in placed:
            orders.append(Order(f"r{r}", float(t), float(t + rng.uniform(15, 45))))
    return orders


def aggregate(orders: list[Order], now: float = 0.0) -> dict[str, dict[str, float]]:
    """The two features per restaurant, as of `now` (minutes)."""
    marks = now - np.arange(60)  # the minute marks of the last hour
    features: dict[str, dict[str, float]] = {}
    by_restaurant: dict[str, list[Order]] = {}
    for o in orders:
        by_restaurant.setdefault(o.restaurant_id, []).append(o)
    for rid, its in by_restaurant.items():
        placed = np.array([o.placed for o in its])
        delivered = np.array([o.delivered for o in its])
        last_hour = int(np.sum((placed > now - 60) & (placed <= now)))
        outstanding = [(np.sum((placed <= m) & (delivered > m))) for m in marks]
        features[rid] = {"orders_last_hour": float(last_hour),
                         "outstanding_per_minute": float(np.mean(outstanding))}
    return features


def write_sqlite(path: str, features: dict[str, dict[str, float]]) -> None:
    """Replace the table's rows with `features` (one transaction)."""
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (restaurant_id TEXT PRIMARY KEY, "
                   + ", ".join(f"{f} REAL" for f in FEATURES) + ")")
        db.execute(f"DELETE FROM {TABLE}")
        db.executemany(f"INSERT INTO {TABLE} VALUES (?, {', '.join('?' * len(FEATURES))})",
                       [(rid, *(row[f] for f in FEATURES)) for rid, row in features.items()])
    db.close()


def write_redis(url: str, features: dict[str, dict[str, float]]) -> None:
    """One hash per restaurant, written in one pipelined round trip."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    pipe = client.pipeline(transaction=False)
    for rid, row in features.items():
        pipe.hset(f"{KEY_PREFIX}{rid}", mapping=row)
    pipe.execute()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", help="SQLite file to (re)write")
    where.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--restaurants", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    features = aggregate(generate_orders(args.restaurants, args.seed))
    if args.sqlite:
        write_sqlite(args.sqlite, features)
    else:
        write_redis(args.redis, features)
    sample = features["r0"]
    print(f"wrote {len(features)} restaurants to {args.sqlite or args.redis}; r0: "
          + ", ".join(f"{k}={v:.2f}" for k, v in sample.items()))


if __name__ == "__main__":
    main()
